import CLibFuzzer
import NIOCore
@testable import Redis

/// What a Redis server sends: fed to the RESP reader in reads of 1 to 16 bytes (the first input
/// byte chooses), taking every complete reply after each read until the reader fails.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRedis(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let input = UnsafeBufferPointer(start: start, count: count)
    guard let first = input.first, let reader = RESPReader() else { return 0 }
    let readSize = Int(first % 16) + 1
    let allocator = ByteBufferAllocator()
    var offset = 1
    do {
        while offset < input.count {
            let end = min(offset + readSize, input.count)
            try reader.feed(ByteBuffer(bytes: UnsafeBufferPointer(rebasing: input[offset..<end])))
            offset = end
            while try reader.next(allocator: allocator) != nil {}
        }
    } catch {
        // A protocol error closes the connection; nothing more is read.
    }
    return 0
}

/// The executable's entry point, where SwiftPM expects it (see CLibFuzzer's shim.h).
@_cdecl("FuzzRedis_main")
public func fuzzRedisMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    sidecast_fuzz_main(argc, argv) { data, size in fuzzRedis(data!, size) }
}
