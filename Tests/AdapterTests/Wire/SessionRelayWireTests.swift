import Adapter
import EngineIO
import NIOCore
import SidecastJSON
import XCTest

/// The session relay's messages between nodes (`SessionRelayWire`): every kind reads back as
/// written, and what is not one of them is refused with a reason, never half-read.
final class SessionRelayWireTests: XCTestCase {
    private let node = RelayNode(tag: "Ab3_")!

    private let every: [SessionRelayMessage] = [
        .request(id: 7, sid: "xxAb3_yyyyyyyyy", transport: "polling", method: "POST", kind: .post, binary: false,
                 body: ByteBuffer(string: "40\u{1E}42[\"chat\"]")),
        .request(id: 8, sid: "xxAb3_yyyyyyyyy", transport: "polling", method: "GET", kind: .poll, binary: false, body: ByteBuffer()),
        .request(id: 9, sid: "s", transport: "polling", method: "POST", kind: .refusedPost, binary: true, body: ByteBuffer()),
        .request(id: 10, sid: "s", transport: "polling", method: "PUT", kind: .other, binary: false, body: ByteBuffer()),
        .requestClosed(id: 7, sid: "s"),
        .upgrade(id: 11, sid: "s"),
        .packets(id: 11, sid: "s", [RelayedFrame(isBinary: false, bytes: ByteBuffer(string: "2probe")),
                                    RelayedFrame(isBinary: true, bytes: ByteBuffer(bytes: [0, 0xFF])),
                                    RelayedFrame(isBinary: false, bytes: ByteBuffer())]),
        .webSocketClosed(id: 11, sid: "s", failed: true),
        .webSocketReport(id: 11, sid: "s", writable: false, bufferedBytes: 1 << 20),
        .held(id: 8),
        .pollAnswer(id: 8, body: ByteBuffer(string: "6"), binary: false),
        .pollAnswer(id: 8, body: ByteBuffer(bytes: [0, 1, 0xFF, 4]), binary: true),
        .postAnswer(id: 7, error: nil),
        .postAnswer(id: 7, error: 3),
        .refused(id: 8, error: 1),
        .frames([RelayedFrames(id: 11, frames: [RelayedFrame(isBinary: false, bytes: ByteBuffer(string: "3probe"))]),
                 RelayedFrames(id: UInt64.max, frames: [])]),
        .closeWebSocket(id: 11),
        .readWebSocket(id: 11, paused: true),
    ]

    func testEveryMessageReadsBackAsWritten() throws {
        for message in every {
            let decoded = try SessionRelayWire.decode(SessionRelayWire.encode(message, from: node))
            XCTAssertEqual(decoded.message, message)
            XCTAssertEqual(decoded.from, node)
        }
    }

    /// `[from, type, ...]`: a poll's answer is an array of four after the sender and type.
    func testLayout() throws {
        let bytes = SessionRelayWire.encode(.pollAnswer(id: 5, body: ByteBuffer(string: "6"), binary: false), from: node)
        XCTAssertEqual(try MessagePack.decode(bytes), [.string("Ab3_"), 7, 5, .binary(ByteBuffer(string: "6")), false])
        XCTAssertEqual(SessionRelayWire.channel(prefix: "socket.io", node: node), "socket.io#relay#Ab3_#")
    }

    func testMalformedMessagesAreRefused() {
        let cases: [(String, JSONValue)] = [
            ("not an array", ["from": "Ab3_"]),
            ("too short", [.string("Ab3_")]),
            ("bad sender", [.string("Ab3"), 6, 1]),
            ("sender not a string", [1, 6, 1]),
            ("type not an integer", [.string("Ab3_"), "6", 1]),
            ("unknown type", [.string("Ab3_"), 99, 1]),
            ("missing id", [.string("Ab3_"), 6]),
            ("id not an integer", [.string("Ab3_"), 6, "1"]),
            ("extra field", [.string("Ab3_"), 6, 1, 2]),
            ("unknown request kind", [.string("Ab3_"), 0, 1, "s", "polling", "GET", 9, false, .binary(ByteBuffer())]),
            ("body not bytes", [.string("Ab3_"), 0, 1, "s", "polling", "GET", 0, false, "body"]),
            ("frame not a pair", [.string("Ab3_"), 3, 1, "s", [[false]]]),
            ("frame bytes as a string", [.string("Ab3_"), 3, 1, "s", [[false, "2probe"]]]),
            ("frames batch not a pair", [.string("Ab3_"), 10, [[1]]]),
            ("post error not an integer", [.string("Ab3_"), 8, 1, "3"]),
        ]
        for (reason, value) in cases {
            XCTAssertThrowsError(try SessionRelayWire.decode(MessagePack.encode(value)), reason)
        }
        XCTAssertThrowsError(try SessionRelayWire.decode(ByteBuffer(bytes: [0x93, 0xA4])), "truncated msgpack")
        XCTAssertThrowsError(try SessionRelayWire.decode(ByteBuffer()), "empty")
    }
}
