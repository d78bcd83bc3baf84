import CLibFuzzer
import Adapter
import NIOCore
import SidecastJSON

/// A message from another node on Redis: the same bytes through every msgpack decoder the
/// adapter uses for what it receives.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAdapter(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = ByteBuffer(bytes: UnsafeBufferPointer(start: start, count: count))
    _ = try? MessagePack.decode(bytes)
    _ = try? RedisBroadcast.decode(bytes)
    _ = try? RedisBroadcast.decode(bytes, ignoringUID: "fuzz", namespace: "/")
    _ = try? RedisRequest.decode(bytes)
    _ = try? RedisResponse.decode(bytes)
    _ = try? ClusterMessage.decode(bytes)
    return 0
}

/// The executable's entry point, where SwiftPM expects it (see CLibFuzzer's shim.h).
@_cdecl("FuzzAdapter_main")
public func fuzzAdapterMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    sidecast_fuzz_main(argc, argv) { data, size in fuzzAdapter(data!, size) }
}
