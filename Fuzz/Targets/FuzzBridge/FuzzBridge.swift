import CLibFuzzer
@testable import Bridge
import NIOCore

/// A backend's byte stream on the Unix socket: split into lines by the NDJSON decoder, fed in
/// reads of 1 to 16 bytes (the first input byte chooses), and each line decoded as a command.
/// The bytes left at the end are read as a final line, as at EOF.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBridge(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let input = UnsafeBufferPointer(start: start, count: count)
    guard let first = input.first else { return 0 }
    let readSize = Int(first % 16) + 1
    var decoder = NDJSONFrameDecoder(maxLineLength: 512)
    var buffer = ByteBuffer()
    var offset = 1
    while offset < input.count {
        let end = min(offset + readSize, input.count)
        buffer.writeBytes(UnsafeBufferPointer(rebasing: input[offset..<end]))
        offset = end
        while let frame = decoder.nextFrame(&buffer) {
            if case .line(let line) = frame { _ = try? BackendRequest(line: line) }
        }
    }
    if buffer.readableBytes > 0 { _ = try? BackendRequest(line: buffer) }
    return 0
}

/// The executable's entry point, where SwiftPM expects it (see CLibFuzzer's shim.h).
@_cdecl("FuzzBridge_main")
public func fuzzBridgeMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    sidecast_fuzz_main(argc, argv) { data, size in fuzzBridge(data!, size) }
}
