import CLibFuzzer
@testable import Bridge
import NIOCore
import SidecastJSON

/// A backend's byte stream on the Unix socket: split into lines by the NDJSON decoder, fed in
/// reads of 1 to 16 bytes (the first input byte chooses), and each line decoded as a command.
/// The bytes left at the end are read as a final line, as at EOF. Each line is also parsed as
/// a `JSONDocument` (member by member when it is an object) and as a `JSONValue` (whole): both
/// must agree, in value or in error, and the emit text printed from the document must spell the
/// same array as printing the value.
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
            if case .line(let line) = frame { decode(line) }
        }
    }
    if buffer.readableBytes > 0 { decode(buffer) }
    return 0
}

private func decode(_ line: ByteBuffer) {
    _ = try? BackendRequest(line: line)
    let whole: Result<JSONValue, JSONError>
    do { whole = .success(try JSONValue(parsing: line, binaryObjects: .keep)) } catch { whole = .failure(error) }
    let document: JSONDocument
    do {
        document = try JSONDocument(parsing: line)
    } catch {
        guard case .failure(let expected) = whole, expected == error else { fatalError("JSONDocument failed with \(error), JSONValue gave \(whole)") }
        return
    }
    guard case .success(let value) = whole, (try? document.value(binaryObjects: .keep)) == value else {
        fatalError("JSONDocument parsed \(String(describing: try? document.value(binaryObjects: .keep))), JSONValue gave \(whole)")
    }
    guard let printed = document.printedArray(first: "event", elementsOf: "args") else { return }
    let expected = JSONValue.array([value["event"]!] + (value["args"]?.arrayValue ?? [])).jsonString()
    guard printed.value == (try? JSONValue(parsing: expected, binaryObjects: .keep)) else {
        fatalError("printedArray gave \(String(buffer: printed.bytes)), printing the value gives \(expected)")
    }
}

/// The executable's entry point, where SwiftPM expects it (see CLibFuzzer's shim.h).
@_cdecl("FuzzBridge_main")
public func fuzzBridgeMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    sidecast_fuzz_main(argc, argv) { data, size in fuzzBridge(data!, size) }
}
