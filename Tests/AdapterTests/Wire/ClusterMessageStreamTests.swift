import Adapter
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Stream entries as `@socket.io/redis-streams-adapter` writes them (`RedisStreamsAdapter.encode`
/// in its `lib/adapter.ts`): fields `uid`, `nsp`, `type` as text, then `data` as
/// `JSON.stringify(message.data)`, or the msgpack of `data` (`@msgpack/msgpack`) in base64 when
/// a kind that may hold binary does; no `data` for heartbeats and `ADAPTER_CLOSE`.
final class ClusterMessageStreamTests: XCTestCase {
    private let uid = "a1b2c3d4e5f60718"

    private func fields(_ message: ClusterMessage) -> [String] {
        message.streamFields.flatMap { [$0.name, String(buffer: $0.value)] }
    }

    private func entry(_ pairs: [String: String]) -> [String: ByteBuffer] {
        pairs.mapValues { ByteBuffer(string: $0) }
    }

    func testHeartbeatsHaveNoData() throws {
        for (body, type) in [(ClusterMessage.Body.initialHeartbeat, "1"), (.heartbeat, "2"), (.adapterClose, "13")] {
            let message = ClusterMessage(uid: uid, namespace: "/", body: body)
            XCTAssertEqual(fields(message), ["uid", uid, "nsp", "/", "type", type])
            XCTAssertEqual(try ClusterMessage(streamFields: entry(["uid": uid, "nsp": "/", "type": type])), message)
        }
    }

    func testBroadcastDataIsJSONText() throws {
        // io.to("room1").emit("hello", "world") on namespace /chat
        let data = #"{"packet":{"type":2,"data":["hello","world"],"nsp":"/chat"},"opts":{"rooms":["room1"],"except":[],"flags":{}}}"#
        let message = ClusterMessage(uid: uid, namespace: "/chat", body: .broadcast(
            packet: SocketIOPacket(type: .event, namespace: "/chat", data: ["hello", "world"]),
            options: ClusterOptions(rooms: ["room1"]),
            requestId: nil
        ))
        XCTAssertEqual(fields(message), ["uid", uid, "nsp", "/chat", "type", "3", "data", data])
        XCTAssertEqual(try ClusterMessage(streamFields: entry(["uid": uid, "nsp": "/chat", "type": "3", "data": data])), message)
    }

    func testSidecastsEntryNumberIsIgnoredAsNodeIgnoresIt() throws {
        // Node's `RedisStreamsAdapter.decode` reads uid, nsp, type and data, nothing else.
        let message = ClusterMessage(uid: uid, namespace: "/", body: .heartbeat)
        XCTAssertEqual(try ClusterMessage(streamFields: entry(["uid": uid, "nsp": "/", "type": "2", "sidecast-seq": "7"])), message)
    }

    func testRequestsAndResponses() throws {
        let opts = #""opts":{"rooms":["a"],"except":[],"flags":{}}"#
        let vectors: [(ClusterMessage.Body, String, String)] = [
            (.socketsJoin(options: ClusterOptions(rooms: ["a"]), rooms: ["b"]), "4", #"{\#(opts),"rooms":["b"]}"#),
            (.disconnectSockets(options: ClusterOptions(rooms: ["a"]), close: true), "6", #"{\#(opts),"close":true}"#),
            (.fetchSockets(options: ClusterOptions(rooms: ["a"]), requestId: "0123456789abcdef"), "7", #"{\#(opts),"requestId":"0123456789abcdef"}"#),
            (.serverSideEmit(requestId: "1111111111111111", packet: ["q", 1]), "9", #"{"requestId":"1111111111111111","packet":["q",1]}"#),
            (.serverSideEmitResponse(requestId: "1111111111111111", packet: "ok"), "10", #"{"requestId":"1111111111111111","packet":"ok"}"#),
            (.broadcastClientCount(requestId: "2222222222222222", clientCount: 3), "11", #"{"requestId":"2222222222222222","clientCount":3}"#),
        ]
        for (body, type, data) in vectors {
            let message = ClusterMessage(uid: uid, namespace: "/", body: body)
            XCTAssertEqual(fields(message), ["uid", uid, "nsp", "/", "type", type, "data", data])
            XCTAssertEqual(try ClusterMessage(streamFields: entry(["uid": uid, "nsp": "/", "type": type, "data": data])), message)
        }
    }

    func testBinaryBroadcastIsBase64MessagePackOfTheDataAlone() throws {
        // io.to("r").emit("ev", Buffer.from([1, 2])): base64 of
        // 82 a6"packet" 83{type:2, data:["ev", bin 0102], nsp:"/"} a4"opts" 83{rooms:["r"], except:[], flags:{}}
        let data = "gqZwYWNrZXSDpHR5cGUCpGRhdGGSomV2xAIBAqNuc3ChL6RvcHRzg6Vyb29tc5GhcqZleGNlcHSQpWZsYWdzgA=="
        let message = ClusterMessage(uid: uid, namespace: "/", body: .broadcast(
            packet: SocketIOPacket(type: .event, namespace: "/", data: ["ev", .binary(ByteBuffer(bytes: [1, 2]))]),
            options: ClusterOptions(rooms: ["r"]),
            requestId: nil
        ))
        XCTAssertEqual(fields(message), ["uid", uid, "nsp", "/", "type", "3", "data", data])
        let decoded = try ClusterMessage(streamFields: entry(["uid": uid, "nsp": "/", "type": "3", "data": data]))
        guard case .broadcast(let packet, let options, nil) = decoded.body else { return XCTFail("not a broadcast") }
        XCTAssertEqual(packet.data, ["ev", .binary(ByteBuffer(bytes: [1, 2]))])
        XCTAssertEqual(options.rooms, ["r"])
    }

    func testBinaryAckIsBase64MessagePack() throws {
        let data = "gqlyZXF1ZXN0SWSwMjIyMjIyMjIyMjIyMjIyMqZwYWNrZXTEAf8="
        let message = ClusterMessage(uid: uid, namespace: "/", body: .broadcastAck(
            requestId: "2222222222222222", packet: .binary(ByteBuffer(bytes: [0xff]))
        ))
        XCTAssertEqual(fields(message), ["uid", uid, "nsp", "/", "type", "12", "data", data])
        XCTAssertEqual(try ClusterMessage(streamFields: entry(["uid": uid, "nsp": "/", "type": "12", "data": data])), message)
    }

    func testBadEntriesAreRefused() {
        let bad: [[String: String]] = [
            ["nsp": "/", "type": "2"],  // no uid
            ["uid": uid, "nsp": "/"],  // no type
            ["uid": uid, "nsp": "/", "type": "two"],
            ["uid": uid, "nsp": "/", "type": "99"],
            ["uid": uid, "nsp": "/", "type": "3", "data": "{\"packet\":"],  // truncated JSON
            ["uid": uid, "nsp": "/", "type": "3", "data": "!!not base64!!"],
            ["uid": uid, "nsp": "/", "type": "3", "data": "kQE="],  // msgpack [1], not an object
            ["uid": uid, "nsp": "/", "type": "3", "data": "{}"],  // a broadcast without a packet
        ]
        for fields in bad {
            XCTAssertThrowsError(try ClusterMessage(streamFields: entry(fields)), "\(fields)")
        }
    }
}
