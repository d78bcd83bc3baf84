import NIOCore
import SidecastJSON
import XCTest

@testable import SocketIO

final class SocketIOPacketDecoderTests: XCTestCase {
    private func decode(_ text: String) throws -> SocketIOPacket? {
        var decoder = SocketIOPacketDecoder()
        return try decoder.decode(text: text)
    }

    private func assertRejects(_ text: String, _ expected: SocketIOParseError, file: StaticString = #filePath, line: UInt = #line) {
        var decoder = SocketIOPacketDecoder()
        XCTAssertThrowsError(try decoder.decode(text: text), text, file: file, line: line) { error in
            XCTAssertEqual(error as? SocketIOParseError, expected, text, file: file, line: line)
        }
    }

    func testProtocolExamples() throws {
        XCTAssertEqual(try decode("0"), SocketIOPacket(type: .connect))
        XCTAssertEqual(
            try decode(#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
            SocketIOPacket(type: .connect, namespace: "/admin", data: ["sid": "oSO0OpakMV_3jnilAAAA"])
        )
        XCTAssertEqual(try decode(#"4{"message":"Not authorized"}"#), SocketIOPacket(type: .connectError, data: ["message": "Not authorized"]))
        XCTAssertEqual(try decode(#"2["foo"]"#), SocketIOPacket(type: .event, data: ["foo"]))
        XCTAssertEqual(try decode(#"2/admin,["bar"]"#), SocketIOPacket(type: .event, namespace: "/admin", data: ["bar"]))
        XCTAssertEqual(try decode(#"212["foo"]"#), SocketIOPacket(type: .event, id: 12, data: ["foo"]))
        XCTAssertEqual(try decode(#"3/admin,13["bar"]"#), SocketIOPacket(type: .ack, namespace: "/admin", id: 13, data: ["bar"]))
        XCTAssertEqual(try decode("1"), SocketIOPacket(type: .disconnect))
        XCTAssertEqual(try decode("1/admin,"), SocketIOPacket(type: .disconnect, namespace: "/admin"))
    }

    // Client packets sent by the protocol's test suite.
    func testTestSuitePackets() throws {
        XCTAssertEqual(try decode(#"0{"token":"123"}"#), SocketIOPacket(type: .connect, data: ["token": "123"]))
        XCTAssertEqual(try decode("0/custom,"), SocketIOPacket(type: .connect, namespace: "/custom"))
        XCTAssertEqual(try decode("0/custom"), SocketIOPacket(type: .connect, namespace: "/custom"))
        XCTAssertEqual(try decode(#"0/custom,{"token":"abc"}"#), SocketIOPacket(type: .connect, namespace: "/custom", data: ["token": "abc"]))
        XCTAssertEqual(try decode("1/custom"), SocketIOPacket(type: .disconnect, namespace: "/custom"))
        XCTAssertEqual(try decode(#"2["message",1,"2",{"3":[true]}]"#), SocketIOPacket(type: .event, data: ["message", 1, "2", ["3": [true]]]))
        XCTAssertEqual(try decode(#"2456["message-with-ack",1,"2",{"3":[false]}]"#)?.id, 456)
        assertRejects("abc", .unknownPacketType)
    }

    func testEveryPlainTypeRoundTrips() throws {
        let encoder = SocketIOPacketEncoder()
        let packets = [
            SocketIOPacket(type: .connect),
            SocketIOPacket(type: .connect, namespace: "/a", data: ["auth": ["token": 1]]),
            SocketIOPacket(type: .disconnect, namespace: "/a"),
            SocketIOPacket(type: .event, data: ["chat", "hi 😀", 1.5, nil, ["deep": [1, [2]]]]),
            SocketIOPacket(type: .event, namespace: "/ns/sub", id: 0, data: [42]),
            SocketIOPacket(type: .ack, id: 123_456_789, data: []),
            SocketIOPacket(type: .connectError, namespace: "/x", data: ["message": "nope", "data": ["code": 4]]),
            SocketIOPacket(type: .connectError, data: "reason"),
        ]
        for packet in packets {
            var decoder = SocketIOPacketDecoder()
            let text = encoder.encode(packet).text
            XCTAssertEqual(try decoder.decode(text: text), packet, text)
        }
    }

    func testAPlainEventKeepsItsDataParsedAndEveryOtherPacketIsAValue() throws {
        var decoder = SocketIOPacketDecoder()
        // The frame's buffer has bytes before the packet, as a frame read from a connection does.
        var frame = ByteBuffer(string: #"42/chat,7["m",{"a":1},2]"#)
        frame.moveReaderIndex(forwardBy: 1)
        guard case .event(let namespace, let id, let data, let text)? = try decoder.decodeKeepingEventData(text: frame) else {
            return XCTFail("a plain EVENT keeps its data parsed")
        }
        XCTAssertEqual(namespace, "/chat")
        XCTAssertEqual(id, 7)
        XCTAssertEqual(try data.value(binaryObjects: .keep), ["m", ["a": 1], 2])
        // ... and the text of its name and arguments, as slices of the frame.
        XCTAssertEqual(text.map { String(buffer: $0.name) }, #""m""#)
        XCTAssertEqual(text.map { String(buffer: $0.arguments) }, #"{"a":1},2"#)
        guard case .packet(let ack)? = try decoder.decodeKeepingEventData(text: ByteBuffer(string: #"3/chat,7["ok"]"#)) else {
            return XCTFail("an ACK is a packet")
        }
        XCTAssertEqual(ack, SocketIOPacket(type: .ack, namespace: "/chat", id: 7, data: ["ok"]))
        XCTAssertNil(try decoder.decodeKeepingEventData(text: ByteBuffer(string: #"51-["m",{"_placeholder":true,"num":0}]"#)))
        XCTAssertNotNil(try decoder.decode(binary: ByteBuffer(bytes: [1])))
        // The same checks as for values: a reserved name, no name, a payload that is no array.
        for text in [#"2["connect"]"#, #"2[]"#, #"2[{"a":1}]"#, #"2{"a":1}"#, #"2["m""#] {
            XCTAssertThrowsError(try decoder.decodeKeepingEventData(text: ByteBuffer(string: text)), text)
        }
    }

    func testBinaryEventReassembly() throws {
        var decoder = SocketIOPacketDecoder()
        XCTAssertNil(try decoder.decode(text: #"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#))
        XCTAssertNil(try decoder.decode(binary: ByteBuffer(bytes: [1, 2, 3])))
        let packet = try decoder.decode(binary: ByteBuffer(bytes: [4, 5, 6]))
        XCTAssertEqual(packet, SocketIOPacket(type: .event, data: ["message", .binary(ByteBuffer(bytes: [1, 2, 3])), .binary(ByteBuffer(bytes: [4, 5, 6]))]))
        // The decoder is idle again: the next text packet decodes at once.
        XCTAssertEqual(try decoder.decode(text: #"2["next"]"#), SocketIOPacket(type: .event, data: ["next"]))
    }

    func testBinaryAckReassemblyWithNamespaceAndNestedPlaceholders() throws {
        var decoder = SocketIOPacketDecoder()
        XCTAssertNil(try decoder.decode(text: #"62-/admin,1[{"a":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#))
        XCTAssertNil(try decoder.decode(binary: ByteBuffer(bytes: [0])))
        XCTAssertEqual(
            try decoder.decode(binary: ByteBuffer(bytes: [1])),
            SocketIOPacket(type: .ack, namespace: "/admin", id: 1, data: [["a": .binary(ByteBuffer(bytes: [1]))], [.binary(ByteBuffer(bytes: [0]))]])
        )
    }

    func testBinaryRoundTripThroughEncoder() throws {
        let packet = SocketIOPacket(
            type: .event, namespace: "/files", id: 9,
            data: ["upload", ["name": "a.bin", "content": .binary(ByteBuffer(bytes: Array(0...255)))], .binary(ByteBuffer())]
        )
        let (text, attachments) = SocketIOPacketEncoder().encode(packet)
        var decoder = SocketIOPacketDecoder()
        XCTAssertNil(try decoder.decode(text: text))
        XCTAssertNil(try decoder.decode(binary: attachments[0]))
        XCTAssertEqual(try decoder.decode(binary: attachments[1]), packet)
    }

    func testPlaceholderOutsideBinaryPacketStaysAnObject() throws {
        let packet = try decode(#"2["e",{"_placeholder":true,"num":0}]"#)
        XCTAssertEqual(packet?.data, ["e", ["_placeholder": true, "num": 0]])
    }

    func testInvalidPlaceholdersAreRejected() {
        for payload in [#"{"_placeholder":true,"num":1}"#, #"{"_placeholder":true,"num":-1}"#, #"{"_placeholder":true}"#, #"{"_placeholder":true,"num":"0"}"#, #"{"_placeholder":true,"num":0.5}"#] {
            var decoder = SocketIOPacketDecoder()
            XCTAssertNoThrow(try decoder.decode(text: #"51-["e","# + payload + "]"))
            XCTAssertThrowsError(try decoder.decode(binary: ByteBuffer(bytes: [1])), payload) { error in
                XCTAssertEqual(error as? SocketIOParseError, .invalidPlaceholder)
            }
            XCTAssertThrowsError(try decoder.decode(binary: ByteBuffer(bytes: [1])), "decoder should be idle after the error") { error in
                XCTAssertEqual(error as? SocketIOParseError, .unexpectedBinary)
            }
        }
    }

    func testBinaryFrameWithoutPendingPacketThrows() {
        var decoder = SocketIOPacketDecoder()
        XCTAssertThrowsError(try decoder.decode(binary: ByteBuffer(bytes: [1]))) { error in
            XCTAssertEqual(error as? SocketIOParseError, .unexpectedBinary)
        }
    }

    func testTextWhileWaitingForAttachmentsThrows() throws {
        var decoder = SocketIOPacketDecoder()
        XCTAssertNil(try decoder.decode(text: #"51-["e",{"_placeholder":true,"num":0}]"#))
        XCTAssertThrowsError(try decoder.decode(text: #"2["e"]"#)) { error in
            XCTAssertEqual(error as? SocketIOParseError, .unexpectedText)
        }
    }

    func testAttachmentCounts() throws {
        var decoder = SocketIOPacketDecoder(maxAttachments: 2)
        XCTAssertNil(try decoder.decode(text: #"52-["e"]"#))
        assertRejects(#"5-["e"]"#, .invalidAttachmentCount)
        assertRejects(#"50-["e"]"#, .invalidAttachmentCount)
        assertRejects(#"5a-["e"]"#, .invalidAttachmentCount)
        assertRejects(#"51["e"]"#, .invalidAttachmentCount)
        assertRejects("51", .invalidAttachmentCount)
        assertRejects(#"611-[]"#, .tooManyAttachments)
        assertRejects(#"599999999999999999999999-[]"#, .tooManyAttachments)
        var strict = SocketIOPacketDecoder(maxAttachments: 2)
        XCTAssertThrowsError(try strict.decode(text: #"53-["e"]"#)) { error in
            XCTAssertEqual(error as? SocketIOParseError, .tooManyAttachments)
        }
    }

    func testPayloadValidationPerType() {
        // CONNECT: object or nothing.
        assertRejects(#"0[]"#, .invalidPayload)
        assertRejects(#"0"tok""#, .invalidPayload)
        assertRejects("0null", .invalidPayload)
        // DISCONNECT: nothing.
        assertRejects(#"1{}"#, .invalidPayload)
        assertRejects(#"1/admin,{}"#, .invalidPayload)
        // CONNECT_ERROR: string or object.
        assertRejects("4[]", .invalidPayload)
        assertRejects("4 1", .invalidPayload)
        // EVENT: non-empty array starting with a number or a non-reserved name.
        assertRejects(#"2{}"#, .invalidPayload)
        assertRejects(#"2[]"#, .invalidPayload)
        assertRejects(#"2[null]"#, .invalidPayload)
        assertRejects(#"2[["x"]]"#, .invalidPayload)
        assertRejects(#"2"x""#, .invalidPayload)
        for reserved in ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"] {
            assertRejects(#"2[""# + reserved + #""]"#, .invalidPayload)
        }
        // ACK: array.
        assertRejects(#"3{}"#, .invalidPayload)
        assertRejects(#"31"x""#, .invalidPayload)
    }

    func testValidPayloadEdgeCases() throws {
        XCTAssertEqual(try decode(#"2[1,"x"]"#)?.data, [1, "x"])
        XCTAssertEqual(try decode(#"2[1.5]"#)?.data, [1.5])
        XCTAssertEqual(try decode(#"2["Connect"]"#)?.data, ["Connect"])
        XCTAssertEqual(try decode(#"4"reason""#), SocketIOPacket(type: .connectError, data: "reason"))
        XCTAssertEqual(try decode("3/admin,5[]"), SocketIOPacket(type: .ack, namespace: "/admin", id: 5, data: []))
        // socket.io-parser only validates a payload that is present.
        XCTAssertEqual(try decode("2"), SocketIOPacket(type: .event))
        XCTAssertEqual(try decode("37"), SocketIOPacket(type: .ack, id: 7))
    }

    func testInvalidJSONAndUnknownTypes() {
        assertRejects("4abc", .invalidJSON)
        assertRejects(#"2["a""#, .invalidJSON)
        assertRejects(#"2["a"]x"#, .invalidJSON)
        assertRejects("", .unknownPacketType)
        assertRejects("7", .unknownPacketType)
        assertRejects("9[]", .unknownPacketType)
        assertRejects(#"x["a"]"#, .unknownPacketType)
        assertRejects(#"-2["a"]"#, .unknownPacketType)
    }

    func testAckIDs() throws {
        XCTAssertEqual(try decode(#"2999999999999999999["a"]"#)?.id, 999_999_999_999_999_999)
        assertRejects(#"29999999999999999999["a"]"#, .invalidAckID)
        // A namespace that does not start with "/" is not one: the rest is read as id and payload.
        assertRejects(#"2admin,["a"]"#, .invalidJSON)
    }

    func testNamespaceRunsToTheFirstComma() throws {
        XCTAssertEqual(try decode(#"2/a b/é,1["x,y"]"#), SocketIOPacket(type: .event, namespace: "/a b/é", id: 1, data: ["x,y"]))
        XCTAssertEqual(try decode("0/"), SocketIOPacket(type: .connect, namespace: "/"))
    }

    func testByteBufferAndSubstringInputs() throws {
        var decoder = SocketIOPacketDecoder()
        var frame = ByteBuffer(string: #"42/chat,3["hello",{"n":1}]"#)
        frame.moveReaderIndex(forwardBy: 1)
        XCTAssertEqual(try decoder.decode(text: frame), SocketIOPacket(type: .event, namespace: "/chat", id: 3, data: ["hello", ["n": 1]]))
        let message = #"42["sub"]"#
        XCTAssertEqual(try decoder.decode(text: message.dropFirst()), SocketIOPacket(type: .event, data: ["sub"]))
    }

    /// A WebSocket text frame is no longer copied into a `String` (which replaced bad bytes
    /// with U+FFFD): bad UTF-8 in the payload now reaches jansson, which refuses it, and the
    /// client is closed as after any malformed packet (Node's `ws` closes it with 1007).
    func testInvalidUTF8InAnEventIsInvalidJSON() {
        var decoder = SocketIOPacketDecoder()
        var frame = ByteBuffer(string: #"2["m",""#)
        frame.writeBytes([0xC3, 0x28])
        frame.writeString(#""]"#)
        XCTAssertThrowsError(try decoder.decodeKeepingEventData(text: frame)) { error in
            XCTAssertEqual(error as? SocketIOParseError, .invalidJSON)
        }
    }

    func testInvalidUTF8NamespaceIsRejected() {
        var decoder = SocketIOPacketDecoder()
        var frame = ByteBuffer(string: "0/")
        frame.writeBytes([0xC3, 0x28])
        XCTAssertThrowsError(try decoder.decode(text: frame)) { error in
            XCTAssertEqual(error as? SocketIOParseError, .invalidNamespace)
        }
    }
}
