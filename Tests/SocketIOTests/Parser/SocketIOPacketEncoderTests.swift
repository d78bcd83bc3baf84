import NIOCore
import SidecastJSON
import XCTest

@testable import SocketIO

final class SocketIOPacketEncoderTests: XCTestCase {
    private let encoder = SocketIOPacketEncoder()

    private func text(_ packet: SocketIOPacket) -> String {
        let (text, attachments) = encoder.encode(packet)
        XCTAssertEqual(attachments, [], "unexpected attachments for \(text)")
        return text
    }

    // The examples of the protocol's "Packet encoding" section.
    func testProtocolExamples() {
        XCTAssertEqual(text(SocketIOPacket(type: .connect)), "0")
        XCTAssertEqual(
            text(SocketIOPacket(type: .connect, namespace: "/admin", data: ["sid": "oSO0OpakMV_3jnilAAAA"])),
            #"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#
        )
        XCTAssertEqual(text(SocketIOPacket(type: .connectError, data: ["message": "Not authorized"])), #"4{"message":"Not authorized"}"#)
        XCTAssertEqual(text(SocketIOPacket(type: .event, data: ["foo"])), #"2["foo"]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .event, namespace: "/admin", data: ["bar"])), #"2/admin,["bar"]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .event, id: 12, data: ["foo"])), #"212["foo"]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .ack, namespace: "/admin", id: 13, data: ["bar"])), #"3/admin,13["bar"]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .disconnect)), "1")
        XCTAssertEqual(text(SocketIOPacket(type: .disconnect, namespace: "/admin")), "1/admin,")
    }

    func testBinaryEventExamples() {
        let single = encoder.encode(SocketIOPacket(type: .event, data: ["baz", .binary(ByteBuffer(bytes: [1, 2, 3, 4]))]))
        XCTAssertEqual(single.text, #"51-["baz",{"_placeholder":true,"num":0}]"#)
        XCTAssertEqual(single.attachments, [ByteBuffer(bytes: [1, 2, 3, 4])])

        let double = encoder.encode(
            SocketIOPacket(type: .event, namespace: "/admin", data: ["baz", .binary(ByteBuffer(bytes: [1, 2])), .binary(ByteBuffer(bytes: [3, 4]))])
        )
        XCTAssertEqual(double.text, #"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        XCTAssertEqual(double.attachments, [ByteBuffer(bytes: [1, 2]), ByteBuffer(bytes: [3, 4])])
    }

    func testBinaryAckExamples() {
        let ack = encoder.encode(SocketIOPacket(type: .ack, id: 15, data: ["bar", .binary(ByteBuffer(bytes: [1, 2, 3, 4]))]))
        XCTAssertEqual(ack.text, #"61-15["bar",{"_placeholder":true,"num":0}]"#)
        XCTAssertEqual(ack.attachments, [ByteBuffer(bytes: [1, 2, 3, 4])])

        let sampleSession = encoder.encode(SocketIOPacket(type: .binaryAck, namespace: "/admin", id: 1, data: [.binary(ByteBuffer(bytes: [0xFF]))]))
        XCTAssertEqual(sampleSession.text, #"61-/admin,1[{"_placeholder":true,"num":0}]"#)
    }

    func testNestedBinariesAreNumberedDepthFirstInOutputOrder() {
        let data: JSONValue = [
            "upload",
            ["files": [.binary(ByteBuffer(bytes: [1])), ["thumb": .binary(ByteBuffer(bytes: [2]))]], "name": "x"],
            .binary(ByteBuffer(bytes: [3])),
        ]
        let (text, attachments) = encoder.encode(SocketIOPacket(type: .event, data: data))
        XCTAssertEqual(
            text,
            #"53-["upload",{"files":[{"_placeholder":true,"num":0},{"thumb":{"_placeholder":true,"num":1}}],"name":"x"},{"_placeholder":true,"num":2}]"#
        )
        XCTAssertEqual(attachments, [ByteBuffer(bytes: [1]), ByteBuffer(bytes: [2]), ByteBuffer(bytes: [3])])
    }

    func testBinaryTypeWithoutBinaryDataIsSentPlain() {
        XCTAssertEqual(text(SocketIOPacket(type: .binaryEvent, data: ["a"])), #"2["a"]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .binaryAck, id: 3, data: [])), "33[]")
    }

    func testBinaryOutsideEventsIsNotAnAttachment() {
        let packet = SocketIOPacket(type: .connectError, data: ["message": "no", "data": .binary(ByteBuffer(bytes: [1]))])
        XCTAssertEqual(text(packet), #"4{"message":"no","data":{"$binary":"AQ=="}}"#)
    }

    func testIdsNamespacesAndEmptyData() {
        XCTAssertEqual(text(SocketIOPacket(type: .ack, id: 0, data: [])), "30[]")
        XCTAssertEqual(text(SocketIOPacket(type: .event, namespace: "", data: ["x"])), #"2["x"]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .event, namespace: "/chat", id: 7)), "2/chat,7")
        XCTAssertEqual(text(SocketIOPacket(type: .event, data: .null)), "2")
        XCTAssertEqual(text(SocketIOPacket(type: .connectError, data: "plain reason")), #"4"plain reason""#)
    }

    func testEncodeIntoBufferAppendsAfterEngineIOPrefix() {
        var buffer = ByteBuffer(string: "4")
        let attachments = encoder.encode(SocketIOPacket(type: .event, namespace: "/a", id: 1, data: ["m", .binary(ByteBuffer(bytes: [5]))]), into: &buffer)
        XCTAssertEqual(String(buffer: buffer), #"451-/a,1["m",{"_placeholder":true,"num":0}]"#)
        XCTAssertEqual(attachments, [ByteBuffer(bytes: [5])])
    }

    func testPrintedDataIsCopiedAsItIs() {
        let data: JSONValue = ["m", 1, ["k": [nil, "é"]]]
        let printed = SocketIOPacket(type: .event, namespace: "/ns", id: 4, printedData: JSONText(data))
        let plain = SocketIOPacket(type: .event, namespace: "/ns", id: 4, data: data)
        XCTAssertEqual(text(printed), text(plain))
        XCTAssertEqual(text(printed), #"2/ns,4["m",1,{"k":[null,"é"]}]"#)
        XCTAssertEqual(text(SocketIOPacket(type: .event, printedData: JSONText(nil))), "2")
    }

    func testPrintedAndPlainPacketsAreEqualWhenTheirDataIs() {
        let data: JSONValue = ["m", ["a": 1]]
        var printed = SocketIOPacket(type: .event, printedData: JSONText(data))
        XCTAssertEqual(printed, SocketIOPacket(type: .event, data: data))
        XCTAssertEqual(printed.hashValue, SocketIOPacket(type: .event, data: data).hashValue)
        XCTAssertEqual(printed.data, data)
        XCTAssertNotNil(printed.printedData)
        printed.data = ["other"]
        XCTAssertNil(printed.printedData)
        XCTAssertEqual(text(printed), #"2["other"]"#)
    }

    func testStringAndBufferVariantsAgree() {
        let packet = SocketIOPacket(type: .event, namespace: "/ns", id: 99, data: ["é", 1.5, ["k": nil]])
        var buffer = ByteBuffer()
        _ = encoder.encode(packet, into: &buffer)
        XCTAssertEqual(String(buffer: buffer), encoder.encode(packet).text)
    }
}
