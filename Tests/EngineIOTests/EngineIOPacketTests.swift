import Foundation
import NIOCore
import XCTest

@testable import EngineIO

final class EngineIOPacketTests: XCTestCase {
    private func decode(_ text: String) -> EngineIOPacket? {
        EngineIOPacket(text: ByteBuffer(string: text))
    }

    func testDecodesEveryPacketType() {
        XCTAssertEqual(self.decode("0"), .open)
        XCTAssertEqual(self.decode("1"), .close)
        XCTAssertEqual(self.decode("2"), .ping(ByteBuffer()))
        XCTAssertEqual(self.decode("2probe"), .ping(ByteBuffer(string: "probe")))
        XCTAssertEqual(self.decode("3"), .pong(ByteBuffer()))
        XCTAssertEqual(self.decode("4hello €"), .text(ByteBuffer(string: "hello €")))
        XCTAssertEqual(self.decode("4"), .text(ByteBuffer()))
        XCTAssertEqual(self.decode("5"), .upgrade)
        XCTAssertEqual(self.decode("6"), .noop)
        XCTAssertEqual(self.decode("bAQIDBA=="), .binary(ByteBuffer(bytes: [1, 2, 3, 4])))
    }

    func testMalformedPacketsAreRejected() {
        XCTAssertNil(self.decode(""))
        XCTAssertNil(self.decode("abc"))
        XCTAssertNil(self.decode("7"))
        XCTAssertNil(self.decode("b!!!!"))
    }

    func testProbeDetection() {
        XCTAssertTrue(EngineIOPacket.isProbe(ByteBuffer(string: "probe")))
        XCTAssertFalse(EngineIOPacket.isProbe(ByteBuffer(string: "probes")))
        XCTAssertFalse(EngineIOPacket.isProbe(ByteBuffer()))
    }

    func testPayloadSplitsOnRecordSeparator() {
        let (packets, malformed) = EngineIOPacket.decodePayload(ByteBuffer(string: "4hello\u{1e}2\u{1e}bAQIDBA==\u{1e}4world"))
        XCTAssertFalse(malformed)
        XCTAssertEqual(packets, [
            .text(ByteBuffer(string: "hello")), .ping(ByteBuffer()),
            .binary(ByteBuffer(bytes: [1, 2, 3, 4])), .text(ByteBuffer(string: "world")),
        ])
    }

    func testPayloadStopsAtFirstMalformedRecord() {
        let (packets, malformed) = EngineIOPacket.decodePayload(ByteBuffer(string: "4a\u{1e}x\u{1e}4b"))
        XCTAssertTrue(malformed)
        XCTAssertEqual(packets, [.text(ByteBuffer(string: "a"))])

        let empty = EngineIOPacket.decodePayload(ByteBuffer())
        XCTAssertTrue(empty.malformed)
        XCTAssertEqual(empty.packets, [])

        let trailing = EngineIOPacket.decodePayload(ByteBuffer(string: "4a\u{1e}"))
        XCTAssertTrue(trailing.malformed)
        XCTAssertEqual(trailing.packets, [.text(ByteBuffer(string: "a"))])
    }

    func testMessageEncodings() {
        XCTAssertEqual(EngineIOMessage.text("héllo").storage, .text(ByteBuffer(string: "4héllo")))
        XCTAssertEqual(EngineIOMessage.text(encoded: ByteBuffer(string: "4x")).storage, .text(ByteBuffer(string: "4x")))
        XCTAssertEqual(EngineIOMessage.binary(ByteBuffer(bytes: [9])).storage, .binary(ByteBuffer(bytes: [9])))
        XCTAssertEqual(EngineIOMessage.ping.storage, .text(ByteBuffer(string: "2")))
        XCTAssertEqual(EngineIOMessage.probePong.storage, .text(ByteBuffer(string: "3probe")))
        XCTAssertEqual(EngineIOMessage.noop.storage, .text(ByteBuffer(string: "6")))
        XCTAssertEqual(EngineIOMessage.close.storage, .text(ByteBuffer(string: "1")))
    }

    func testPollingPayloadJoinsPacketsAndBase64EncodesBinary() {
        let shared = EngineIOMessage.text("hello")
        let payload = EngineIOMessage.pollingPayload([shared, .binary(ByteBuffer(bytes: [1, 2, 3, 4])), .ping])
        var joined = ByteBuffer()
        for part in payload.parts { joined.writeImmutableBuffer(part) }
        XCTAssertEqual(String(buffer: joined), "4hello\u{1e}bAQIDBA==\u{1e}2")
        XCTAssertEqual(payload.length, joined.readableBytes)
        // The text buffer goes out as it is: a broadcast shares it with every recipient.
        XCTAssertEqual(payload.parts.first, ByteBuffer(string: "4hello"))

        let single = EngineIOMessage.pollingPayload([EngineIOMessage.text("x")])
        XCTAssertEqual(single.parts, [ByteBuffer(string: "4x")])
        XCTAssertEqual(single.length, 2)
    }

    func testPollingBinaryMatchesFoundationBase64() {
        var generator = SystemRandomNumberGenerator()
        for count in 0..<40 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let payload = EngineIOMessage.pollingPayload([EngineIOMessage.binary(ByteBuffer(bytes: bytes))])
            let text = payload.parts.map { String(buffer: $0) }.joined()
            XCTAssertEqual(text, "b" + Data(bytes).base64EncodedString())
            XCTAssertEqual(EngineIOPacket.decodeBase64(ByteBuffer(string: String(text.dropFirst())).readableBytesView).map { Array($0.readableBytesView) }, bytes)
        }
    }

    func testBase64DecodeAcceptsUnpaddedAndURLSafeInput() {
        XCTAssertEqual(EngineIOPacket.decodeBase64(ByteBuffer(string: "AQIDBA").readableBytesView), ByteBuffer(bytes: [1, 2, 3, 4]))
        XCTAssertEqual(EngineIOPacket.decodeBase64(ByteBuffer(string: "-_8").readableBytesView), ByteBuffer(bytes: [0xFB, 0xFF]))
        XCTAssertNil(EngineIOPacket.decodeBase64(ByteBuffer(string: "AQ=D").readableBytesView))
        XCTAssertNil(EngineIOPacket.decodeBase64(ByteBuffer(string: "A").readableBytesView))
    }

    func testQueryParsing() {
        let uri = EngineIORequestURI("/socket.io/?EIO=4&transport=polling&t=N8h&name=a%20b+c&flag&x=1&x=2#frag")
        XCTAssertEqual(uri.path, "/socket.io/")
        XCTAssertEqual(uri.query, ["EIO": "4", "transport": "polling", "t": "N8h", "name": "a b c", "flag": "", "x": "2"])
        XCTAssertEqual(EngineIORequestURI("/engine.io/").query, [:])
        XCTAssertEqual(EngineIORequestURI("/?bad=%zz%4").query, ["bad": "%zz%4"])
    }

    func testErrorBodiesMatchNodeServer() {
        XCTAssertEqual(EngineIOError.unknownTransport.body, #"{"code":0,"message":"Transport unknown"}"#)
        XCTAssertEqual(EngineIOError.unknownSid.body, #"{"code":1,"message":"Session ID unknown"}"#)
        XCTAssertEqual(EngineIOError.badHandshakeMethod.body, #"{"code":2,"message":"Bad handshake method"}"#)
        XCTAssertEqual(EngineIOError.badRequest.body, #"{"code":3,"message":"Bad request"}"#)
        XCTAssertEqual(EngineIOError.unsupportedProtocolVersion.body, #"{"code":5,"message":"Unsupported protocol version"}"#)
    }
}

final class RandomIDTests: XCTestCase {
    func testIDsAreFifteenURLSafeCharactersAndDoNotRepeat() {
        let urlSafe = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var seen = Set<String>()
        var characters = Set<UInt8>()
        for _ in 0..<10_000 {
            let id = RandomID.make()
            XCTAssertEqual(id.utf8.count, 15)
            XCTAssertTrue(id.utf8.allSatisfy(urlSafe.contains), id)
            characters.formUnion(id.utf8)
            seen.insert(id)
        }
        XCTAssertEqual(seen.count, 10_000)
        XCTAssertEqual(characters, urlSafe, "every character of the alphabet turns up")
    }

    /// Node's sharded adapter tells socket ids from rooms by their 20 characters.
    func testSocketIDsHaveNodesTwentyCharactersAndDoNotRepeat() {
        let urlSafe = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var seen = Set<String>()
        var lastCharacters = Set<UInt8>()
        for _ in 0..<10_000 {
            let id = RandomID.make(length: RandomID.socketIDLength)
            XCTAssertEqual(id.utf16.count, 20)
            XCTAssertTrue(id.utf8.allSatisfy(urlSafe.contains), id)
            lastCharacters.formUnion(id.utf8.suffix(5))
            seen.insert(id)
        }
        XCTAssertEqual(seen.count, 10_000)
        XCTAssertEqual(lastCharacters, urlSafe, "the second word's characters are random too")
    }
}
