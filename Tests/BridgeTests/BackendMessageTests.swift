import NIOCore
import SidecastJSON
import XCTest

@testable import Bridge
@testable import SocketIO

final class BackendMessageTests: XCTestCase {
    /// The event as a client's text packet delivers it: arguments still in the parsed tree.
    private func parsedEvent(_ packet: String) throws -> SocketIOEvent {
        var decoder = SocketIOPacketDecoder()
        guard case .event(_, let id, let data, let text)? = try decoder.decodeKeepingEventData(text: ByteBuffer(string: packet)),
            let name = SocketIOEvent.name(of: data.element(0))
        else { throw XCTSkip("not a plain event: \(packet)") }
        return SocketIOEvent(name: name, data: data, text: text, ackID: id)
    }

    /// The line as it was printed before `eventLine`: the whole message as one value.
    private func lineByValue(sid: String, nsp: String, name: String, args: [JSONValue], ack: Int?) -> String {
        var message: JSONValue = ["type": "event", "sid": .string(sid), "nsp": .string(nsp), "event": .string(name), "args": .array(args)]
        if let ack, case .object(var members) = message {
            members["ack"] = .int(Int64(ack))
            message = .object(members)
        }
        return message.jsonString() + "\n"
    }

    /// A plain event whose name is a string: its name and arguments go into the line as the
    /// client wrote them, and the line still reads as the message printed as a value would.
    func testEventLineCopiesTheClientsText() throws {
        let cases = [
            (#"2["chat",{"t":123456789,"s":42,"p":"xxxx"}]"#, #""chat""#, #"[{"t":123456789,"s":42,"p":"xxxx"}]"#, nil),
            (#"2/admin,17["m",1.0,-0.0,2.5,1e300,0.1,9007199254740992.0,18446744073709551616]"#, #""m""#,
             "[1.0,-0.0,2.5,1e300,0.1,9007199254740992.0,18446744073709551616]", "17"),
            (#"2["é\n\"x\"","\u0000nul","\u2028","😀","\/",{"k":2.0}]"#, #""é\n\"x\"""#, #"["\u0000nul","\u2028","😀","\/",{"k":2.0}]"#, nil),
            (#"2["no args"]"#, #""no args""#, "[]", nil),
            (#"29["m",{"_placeholder":true,"num":0},{"$binary":"AAE="}]"#, #""m""#, #"[{"_placeholder":true,"num":0},{"$binary":"AAE="}]"#, "9"),
            (#"2[ "spaced" , 1 , "two" ]"#, #""spaced""#, #"[ 1 , "two" ]"#, nil),
            (#"2/a[b],5["x",[1]]"#, #""x""#, "[[1]]", "5"),
        ]
        for (packet, name, args, ack) in cases {
            let event = try parsedEvent(packet)
            let (sid, nsp) = ("Ab_c-1\"\\", "/ns\u{1}")
            let line = String(buffer: BackendMessage.eventLine(sid: sid, namespace: nsp, event: event, allocator: ByteBufferAllocator()))
            let expected = #"{"type":"event","sid":"Ab_c-1\"\\","nsp":"/ns\u0001","event":"# + name + #","args":"# + args
                + (ack.map { #","ack":"# + $0 } ?? "") + "}\n"
            XCTAssertEqual(line, expected, packet)
            let parsed = try JSONValue(parsing: ByteBuffer(string: line))
            XCTAssertEqual(parsed["event"], .string(event.name), packet)
            XCTAssertEqual(parsed["args"]?.arrayValue?.count, event.args.count, packet)
        }
    }

    /// Without the client's text (a numeric name, a line break between tokens, arguments
    /// held as values) the line is what printing the message as a value gives.
    func testEventLineIsWhatPrintingTheMessageAsAValueGives() throws {
        let packets = [
            #"2[7,null,true,[{"a":[1.0]}]]"#,
            "2[\"m\",\n1.0,{\"dup\":1,\"k\":2.0,\"dup\":3}]",
            #"2["chat",{"t":123456789,"s":42,"p":"xxxx"}]"#,
        ]
        for packet in packets {
            let event = try parsedEvent(packet)
            let (sid, nsp) = ("Ab_c-1\"\\", "/ns\u{1}")
            let expected = lineByValue(sid: sid, nsp: nsp, name: event.name, args: event.args, ack: event.ackID)
            if !packet.contains("chat") {
                let line = BackendMessage.eventLine(sid: sid, namespace: nsp, event: event, allocator: ByteBufferAllocator())
                XCTAssertEqual(String(buffer: line), expected, packet)
            }
            // Arguments held as values (a binary event's) print the same.
            let byValues = SocketIOEvent(name: event.name, args: event.args, ackID: event.ackID)
            XCTAssertEqual(String(buffer: BackendMessage.eventLine(sid: sid, namespace: nsp, event: byValues, allocator: ByteBufferAllocator())), expected, packet)
        }
    }

    func testEventLineKeepsAckAndNumericNames() throws {
        let event = try parsedEvent(#"212[3.5,"a"]"#)
        XCTAssertEqual(event.name, "3.5")
        XCTAssertEqual(event.ackID, 12)
        let line = BackendMessage.eventLine(sid: "s", namespace: "/", event: event, allocator: ByteBufferAllocator())
        XCTAssertEqual(String(buffer: line), #"{"type":"event","sid":"s","nsp":"/","event":"3.5","args":["a"],"ack":12}"# + "\n")
    }

    func testALongEventLineGrowsItsBuffer() throws {
        let long = String(repeating: "x", count: 5000)
        let event = try parsedEvent(#"2["m",""# + long + #""]"#)
        let line = BackendMessage.eventLine(sid: "s", namespace: "/", event: event, allocator: ByteBufferAllocator())
        XCTAssertEqual(try JSONValue(parsing: line)["args"], [.string(long)])
    }
}
