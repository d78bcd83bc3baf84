import NIOCore
import XCTest

/// Bytes from hex digits; spaces are ignored so vectors can be grouped by msgpack token.
func hex(_ parts: [String]) -> ByteBuffer {
    let digits = parts.joined().filter { !$0.isWhitespace }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    var bytes: [UInt8] = []
    var index = digits.startIndex
    while index < digits.endIndex {
        let next = digits.index(index, offsetBy: 2)
        bytes.append(UInt8(digits[index..<next], radix: 16)!)
        index = next
    }
    return ByteBuffer(bytes: bytes)
}

func hex(_ digits: String) -> ByteBuffer { hex([digits]) }

func hexString(_ buffer: ByteBuffer) -> String {
    buffer.readableBytesView.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// Compares bytes and, on a mismatch, shows both sides as hex.
func XCTAssertBytes(_ actual: ByteBuffer, _ expected: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(hexString(actual), hexString(expected), file: file, line: line)
}
