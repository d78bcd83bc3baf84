import Foundation
import NIOCore
import SidecastJSON
import XCTest

final class Base64Tests: XCTestCase {
    func testRFC4648Vectors() {
        let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(ByteBuffer(string: plain)), encoded)
            XCTAssertEqual(Base64.decode(encoded), ByteBuffer(string: plain))
        }
    }

    func testAgreesWithFoundationForAllLengthsAndBytes() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 250) }
            let expected = Data(bytes).base64EncodedString()
            XCTAssertEqual(Base64.encode(ByteBuffer(bytes: bytes)), expected)
            XCTAssertEqual(Base64.decode(expected), ByteBuffer(bytes: bytes))
        }
        let all = ByteBuffer(bytes: Array(0...255))
        XCTAssertEqual(Base64.encode(all), Data(0...255).base64EncodedString())
    }

    func testEncodeAppendsToBuffer() {
        var buffer = ByteBuffer(string: "x:")
        Base64.encode(ByteBuffer(bytes: [0xFB, 0xFF]), into: &buffer)
        XCTAssertEqual(String(buffer: buffer), "x:+/8=")
    }

    func testRejectsMalformedInput() {
        for bad in ["Zg", "Zg=", "Z===", "====", "Zm9v=", "Zg==Zm9v", "Zm9-", "Zm9_", "Zm 9", "Zh==", "Zm9=", "é123"] {
            XCTAssertNil(Base64.decode(bad), bad)
        }
    }
}
