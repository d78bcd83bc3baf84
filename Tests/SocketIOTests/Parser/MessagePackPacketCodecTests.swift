import NIOCore
import SidecastJSON
import XCTest

@testable import SocketIO

/// socket.io-msgpack-parser (`index.js`): `Encoder.encode` packs the packet object with
/// notepack.io, `Decoder.checkPacket` validates what comes in. The byte vectors are what notepack
/// writes for those objects (fixmap, fixstr, positive fixint, bin 8; members in insertion order,
/// undefined members left out); the invalid inputs are those of the parser's `test/index.js`
/// ("throws an error upon invalid format").
final class MessagePackPacketCodecTests: XCTestCase {
    /// Bytes from hex digits; spaces only group them.
    private func bytes(_ spaced: String) -> ByteBuffer {
        let hex = spaced.filter { $0 != " " }
        var buffer = ByteBuffer()
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            buffer.writeInteger(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return buffer
    }

    private func assertRejects(_ hex: String, _ expected: SocketIOParseError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try MessagePackPacketCodec.decode(self.bytes(hex)), hex, file: file, line: line) { error in
            XCTAssertEqual(error as? SocketIOParseError, expected, hex, file: file, line: line)
        }
    }

    func testEncodesAsNotepackWouldTheServersPackets() {
        // `{type: 2, data: ["hey", "you"], nsp: "/"}`, the broadcast of the parser's test.
        XCTAssertEqual(MessagePackPacketCodec.encode(SocketIOPacket(type: .event, data: ["hey", "you"])),
                       self.bytes("83a47479706502a46461746192a3686579a3796f75a36e7370a12f"))
        // An ack with binary: no BINARY_ACK type, the bytes are a `bin` inside the packet.
        XCTAssertEqual(MessagePackPacketCodec.encode(SocketIOPacket(type: .binaryAck, namespace: "/chat", id: 7,
                                                                    data: [.binary(ByteBuffer(bytes: [1]))])),
                       self.bytes("84a47479706503a46461746191c40101a36e7370a52f63686174a2696407"))
        XCTAssertEqual(MessagePackPacketCodec.encode(SocketIOPacket(type: .connect, data: ["sid": "abc"])),
                       self.bytes("83a47479706500a46461746181a3736964a3616263a36e7370a12f"))
        // DISCONNECT has no data member at all.
        XCTAssertEqual(MessagePackPacketCodec.encode(SocketIOPacket(type: .disconnect)), self.bytes("82a47479706501a36e7370a12f"))
    }

    func testDecodesWhatItEncodes() throws {
        let packets = [
            SocketIOPacket(type: .event, data: ["hey", "you"]),
            SocketIOPacket(type: .ack, namespace: "/chat", id: 7, data: [.binary(ByteBuffer(bytes: [1]))]),
            SocketIOPacket(type: .connect, data: ["token": "x"]),
            SocketIOPacket(type: .disconnect, namespace: "/chat"),
        ]
        for packet in packets {
            XCTAssertEqual(try MessagePackPacketCodec.decode(MessagePackPacketCodec.encode(packet)), packet)
        }
    }

    func testNilPayloadsOfConnectAndDisconnectCountAsAbsent() throws {
        // python-socketio's MsgPackPacket writes `data: None` for both.
        XCTAssertEqual(try MessagePackPacketCodec.decode(self.bytes("83a474797065 01 a464617461 c0 a36e7370 a12f")),
                       SocketIOPacket(type: .disconnect))
        XCTAssertEqual(try MessagePackPacketCodec.decode(self.bytes("83a474797065 00 a464617461 c0 a36e7370 a12f")),
                       SocketIOPacket(type: .connect))
    }

    func testOtherMembersAreIgnored() throws {
        // The JavaScript client adds `options: {compress: true}` to its emits.
        let packet = try MessagePackPacketCodec.decode(MessagePack.encode(
            ["type": 2, "data": ["hi"], "nsp": "/", "options": ["compress": true]]))
        XCTAssertEqual(packet, SocketIOPacket(type: .event, data: ["hi"]))
    }

    func testRejectsWhatTheParsersTestRejects() {
        // Buffer.from([]): "Could not parse".
        self.assertRejects("", .invalidMessagePack)
        // {}, {type: "a"}, {type: 7}, Buffer.from([1]) packed: "invalid packet type".
        self.assertRejects("80", .unknownPacketType)
        self.assertRejects("81a474797065a161", .unknownPacketType)
        self.assertRejects("81a47479706507", .unknownPacketType)
        self.assertRejects("c40101", .unknownPacketType)
        // {type: 2}, {type: 2, nsp: 2}: "invalid namespace".
        self.assertRejects("81a47479706502", .invalidNamespace)
        self.assertRejects("82a47479706502a36e737002", .invalidNamespace)
        // {type: 2, nsp: "/"}, {type: 2, nsp: "/", data: 4}, {type: 4, nsp: "/", data: []}:
        // "invalid payload".
        self.assertRejects("82a47479706502a36e7370a12f", .invalidPayload)
        self.assertRejects("83a47479706502a36e7370a12fa46461746104", .invalidPayload)
        self.assertRejects("83a47479706504a36e7370a12fa46461746190", .invalidPayload)
        // {type: 2, nsp: "/", data: [], id: "a"}: "invalid packet id".
        self.assertRejects("84a47479706502a36e7370a12fa46461746190a26964a161", .invalidAckID)
    }

    func testEventNamesAreCheckedAsSocketIOParserDoes() {
        // Stricter than index.js, as the default parser: a reserved name or no name is refused.
        XCTAssertThrowsError(try MessagePackPacketCodec.decode(MessagePack.encode(["type": 2, "nsp": "/", "data": ["disconnect"]])))
        XCTAssertThrowsError(try MessagePackPacketCodec.decode(MessagePack.encode(["type": 2, "nsp": "/", "data": []])))
        XCTAssertNoThrow(try MessagePackPacketCodec.decode(MessagePack.encode(["type": 2, "nsp": "/", "data": [1]])))
    }
}
