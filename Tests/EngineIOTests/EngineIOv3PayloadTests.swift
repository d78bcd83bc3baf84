import NIOCore
import XCTest

@testable import EngineIO

/// Engine.IO v3 payloads. Vectors from engine.io-parser 2.x, the parser the Node server vendors
/// as `lib/parser-v3/index.ts`: its `test/parser.js` ("should not utf8 encode when dealing with
/// strings only", "decoding error handling") and the format comments of `encodePayload` and
/// `encodePayloadAsBinary` in the parser itself.
final class EngineIOv3PayloadTests: XCTestCase {
    private func text(_ messages: [EngineIOMessage], supportsBinary: Bool = true) -> String? {
        let (body, binary) = EngineIOv3Payload.encode(messages, supportsBinary: supportsBinary)
        XCTAssertFalse(binary)
        return body.getString(at: body.readerIndex, length: body.readableBytes)
    }

    private func decodeText(_ payload: String) -> (packets: [EngineIOPacket], malformed: Bool) {
        EngineIOv3Payload.decode(ByteBuffer(string: payload), binary: false)
    }

    func testTextLengthsCountUTF16CodeUnits() {
        // test/parser.js: encodePayload([message "€€€", message "α"]) is '4:4€€€2:4α'.
        XCTAssertEqual(self.text([.text("€€€"), .text("α")]), "4:4€€€2:4α")
        // A character outside the BMP is two UTF-16 units (JavaScript's String.length).
        XCTAssertEqual(self.text([.text("😀")]), "3:4😀")
        // `encodePayload([])` answers "0:".
        XCTAssertEqual(self.text([]), "0:")
    }

    func testTextPayloadsDecode() {
        let (packets, malformed) = self.decodeText("4:4€€€2:4α1:23:4😀")
        XCTAssertFalse(malformed)
        XCTAssertEqual(packets, [.text(ByteBuffer(string: "€€€")), .text(ByteBuffer(string: "α")), .ping(ByteBuffer()),
                                 .text(ByteBuffer(string: "😀"))])
    }

    func testBadTextPayloadsAreErrors() {
        // test/parser.js, "decoding error handling": bad payload format, bad payload length,
        // bad packet format.
        for payload in ["1!", "", "))", "1:", "3:99:", "1:aa", "1:a2:b"] {
            XCTAssertTrue(self.decodeText(payload).malformed, payload)
        }
        // The packets before the bad one are kept, as the JS callback has already seen them.
        let (packets, malformed) = self.decodeText("1:21:a")
        XCTAssertTrue(malformed)
        XCTAssertEqual(packets, [.ping(ByteBuffer())])
    }

    func testBinaryGoesOutAsTypedBase64WithoutBinarySupport() {
        // `encodeBase64Packet`: "b" + type + base64; the length counts all of it.
        let messages: [EngineIOMessage] = [.text("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"), .binary(ByteBuffer(bytes: [1, 2, 3]))]
        XCTAssertEqual(self.text(messages, supportsBinary: false),
                       "39:451-[\"a\",{\"_placeholder\":true,\"num\":0}]6:b4AQID")
        let (packets, malformed) = self.decodeText("6:b4AQID")
        XCTAssertFalse(malformed)
        XCTAssertEqual(packets, [.binary(ByteBuffer(bytes: [1, 2, 3]))])
    }

    func testBinaryPayloadWhenTheClientSupportsIt() {
        // `encodePayloadAsBinary`: <0 string | 1 binary><length digits as bytes><255><data>;
        // a string is UTF-8, binary data follows its type byte (4 for a message).
        let (body, binary) = EngineIOv3Payload.encode([.text("é"), .binary(ByteBuffer(bytes: Array(0..<12)))],
                                                      supportsBinary: true)
        XCTAssertTrue(binary)
        XCTAssertEqual(Array(body.readableBytesView),
                       [0, 3, 255, 0x34, 0xC3, 0xA9] + [1, 1, 3, 255, 4] + Array(0..<12))
        // Without a binary packet the text format is used even with binary support.
        XCTAssertEqual(self.text([.text("x")], supportsBinary: true), "2:4x")
    }

    func testBinaryPayloadsDecode() {
        // The parser's example "1 3 255 1 2 3": a binary packet of three bytes, its first the type.
        let body = ByteBuffer(bytes: [0, 3, 255, 0x34, 0xC3, 0xA9, 1, 3, 255, 4, 2, 3, 0, 1, 255, 0x32])
        let (packets, malformed) = EngineIOv3Payload.decode(body, binary: true)
        XCTAssertFalse(malformed)
        XCTAssertEqual(packets, [.text(ByteBuffer(string: "é")), .binary(ByteBuffer(bytes: [2, 3])), .ping(ByteBuffer())])
    }

    func testBadBinaryPayloadsAreErrors() {
        // test/parser.js: a buffer [64] is an error; so are a missing 255, a length past the end,
        // a digit over 9, and binary data of a type other than message.
        for bytes: [UInt8] in [[64], [0, 1], [0, 5, 255, 0x34], [0, 10, 255, 0x34], [1, 2, 255, 2, 0], []] {
            XCTAssertTrue(EngineIOv3Payload.decode(ByteBuffer(bytes: bytes), binary: true).malformed, "\(bytes)")
        }
    }

    func testWebSocketBinaryFramesCarryTheType() {
        XCTAssertEqual(Array(EngineIOv3Payload.binaryFrame(ByteBuffer(bytes: [9, 8])).readableBytesView), [4, 9, 8])
        XCTAssertEqual(EngineIOv3Payload.decodeBinaryFrame(ByteBuffer(bytes: [4, 9, 8])), .binary(ByteBuffer(bytes: [9, 8])))
        XCTAssertNil(EngineIOv3Payload.decodeBinaryFrame(ByteBuffer(bytes: [2, 9])))
        XCTAssertNil(EngineIOv3Payload.decodeBinaryFrame(ByteBuffer()))
    }
}
