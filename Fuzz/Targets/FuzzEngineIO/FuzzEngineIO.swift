import CLibFuzzer
@testable import EngineIO
import NIOCore

/// A client's Engine.IO bytes: the body of a polling POST (records split on "\u{1E}"), and the
/// same bytes as one packet in text form, as a WebSocket text frame delivers it; then as an
/// Engine.IO v3 client's POST body in both formats and as its binary WebSocket frame.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEngineIO(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let body = ByteBuffer(bytes: UnsafeBufferPointer(start: start, count: count))
    _ = EngineIOPacket.decodePayload(body)
    _ = EngineIOPacket(text: body)
    _ = EngineIOv3Payload.decode(body, binary: false)
    _ = EngineIOv3Payload.decode(body, binary: true)
    _ = EngineIOv3Payload.decodeBinaryFrame(body)
    return 0
}

/// The executable's entry point, where SwiftPM expects it (see CLibFuzzer's shim.h).
@_cdecl("FuzzEngineIO_main")
public func fuzzEngineIOMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    sidecast_fuzz_main(argc, argv) { data, size in fuzzEngineIO(data!, size) }
}
