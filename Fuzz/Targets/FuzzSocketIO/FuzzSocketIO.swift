import CLibFuzzer
import NIOCore
import SocketIO

/// One connection's Engine.IO messages as the Socket.IO decoder receives them: records split on
/// "\u{1E}", a record starting with "b" is a binary message (an attachment), any other a text
/// message. The decoder keeps its state across records, as it does across a connection's
/// messages, and starts afresh after an error, as a new connection would. The whole input is
/// also one binary message under `--parser msgpack`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSocketIO(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let input = UnsafeBufferPointer(start: start, count: count)
    _ = try? MessagePackPacketCodec.decode(ByteBuffer(bytes: input))
    var decoder = SocketIOPacketDecoder()
    for record in input.split(separator: 0x1E, omittingEmptySubsequences: false) {
        do {
            if record.first == UInt8(ascii: "b") {
                _ = try decoder.decode(binary: ByteBuffer(bytes: record.dropFirst()))
            } else {
                _ = try decoder.decode(text: ByteBuffer(bytes: record))
                // The String entry point parses the same bytes on its own path.
                var fresh = SocketIOPacketDecoder()
                _ = try? fresh.decode(text: String(decoding: record, as: UTF8.self))
            }
        } catch {
            decoder = SocketIOPacketDecoder()
        }
    }
    return 0
}

/// The executable's entry point, where SwiftPM expects it (see CLibFuzzer's shim.h).
@_cdecl("FuzzSocketIO_main")
public func fuzzSocketIOMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    sidecast_fuzz_main(argc, argv) { data, size in fuzzSocketIO(data!, size) }
}
