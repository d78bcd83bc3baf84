import Adapter
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Messages as `createShardedAdapter` publishes them: socket.io-adapter's `ClusterAdapter`
/// builds `{type, data}`, `publish()` then sets `uid` and `nsp` (so they come last), and the
/// sharded adapter writes `JSON.stringify(message)`, or notepack's encoding when the message is
/// of a kind that may hold binary and does.
final class ClusterMessageTests: XCTestCase {
    private let uid = "a1b2c3d4e5f60718"

    private func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    func testHeartbeats() throws {
        for (body, type) in [(ClusterMessage.Body.initialHeartbeat, 1), (.heartbeat, 2), (.adapterClose, 13)] {
            let expected = json(#"{"type":\#(type),"uid":"a1b2c3d4e5f60718","nsp":"/"}"#)
            let message = ClusterMessage(uid: uid, namespace: "/", body: body)
            XCTAssertBytes(message.encode(), expected)
            XCTAssertEqual(try ClusterMessage.decode(expected), message)
        }
    }

    func testBroadcastToOneRoom() throws {
        // io.to("room1").emit("hello", "world")
        let expected = json(
            #"{"type":3,"data":{"packet":{"type":2,"data":["hello","world"],"nsp":"/"},"#
                + #""opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"a1b2c3d4e5f60718","nsp":"/"}"#
        )
        let message = ClusterMessage(uid: uid, namespace: "/", body: .broadcast(
            packet: SocketIOPacket(type: .event, namespace: "/", data: ["hello", "world"]),
            options: ClusterOptions(rooms: ["room1"]),
            requestId: nil
        ))
        XCTAssertBytes(message.encode(), expected)
        XCTAssertEqual(try ClusterMessage.decode(expected), message)
        XCTAssertFalse(message.isResponse)
    }

    func testBroadcastWithAckCarriesTheRequestIdBetweenPacketAndOpts() throws {
        let expected = json(
            #"{"type":3,"data":{"packet":{"type":2,"data":["ping"],"nsp":"/chat"},"requestId":"00ff00ff00ff00ff","#
                + #""opts":{"rooms":[],"except":["r2"],"flags":{"timeout":2000}}},"uid":"a1b2c3d4e5f60718","nsp":"/chat"}"#
        )
        let message = ClusterMessage(uid: uid, namespace: "/chat", body: .broadcast(
            packet: SocketIOPacket(type: .event, namespace: "/chat", data: ["ping"]),
            options: ClusterOptions(except: ["r2"], flags: RedisBroadcastFlags(timeout: 2000)),
            requestId: "00ff00ff00ff00ff"
        ))
        XCTAssertBytes(message.encode(), expected)
        XCTAssertEqual(try ClusterMessage.decode(expected), message)
        XCTAssertEqual(message.requestId, "00ff00ff00ff00ff")
    }

    func testBinaryBroadcastIsMessagePack() throws {
        // io.to("r").emit("ev", Buffer.from([1, 2]))
        let expected = hex([
            "84",  // fixmap 4: the message
            "a4 74797065 03",  // "type": 3 (BROADCAST)
            "a4 64617461 82",  // "data": fixmap 2
            "a6 7061636b6574 83",  // "packet": fixmap 3
            "a4 74797065 02",  // "type": 2 (EVENT, binary or not)
            "a4 64617461 92 a2 6576 c4 02 0102",  // "data": ["ev", bin 8 of 2 bytes]
            "a3 6e7370 a1 2f",  // "nsp": "/"
            "a4 6f707473 83",  // "opts": fixmap 3
            "a5 726f6f6d73 91 a1 72",  // "rooms": ["r"]
            "a6 657863657074 90",  // "except": []
            "a5 666c616773 80",  // "flags": {}
            "a3 756964 b0 61316232633364346535663630373138",  // "uid"
            "a3 6e7370 a1 2f",  // "nsp": "/"
        ])
        let message = ClusterMessage(uid: uid, namespace: "/", body: .broadcast(
            packet: SocketIOPacket(type: .event, namespace: "/", data: ["ev", .binary(ByteBuffer(bytes: [1, 2]))]),
            options: ClusterOptions(rooms: ["r"]),
            requestId: nil
        ))
        XCTAssertBytes(message.encode(), expected)
        guard case .broadcast(let packet, let options, nil) = try ClusterMessage.decode(expected).body else {
            return XCTFail("not a broadcast")
        }
        XCTAssertEqual(packet.data, ["ev", .binary(ByteBuffer(bytes: [1, 2]))])
        XCTAssertEqual(options.rooms, ["r"])
    }

    func testRoomAndSocketRequests() throws {
        let opts = #""opts":{"rooms":["a"],"except":[],"flags":{}}"#
        let vectors: [(ClusterMessage.Body, String)] = [
            (.socketsJoin(options: ClusterOptions(rooms: ["a"]), rooms: ["b"]), #"{"type":4,"data":{\#(opts),"rooms":["b"]},"#),
            (.socketsLeave(options: ClusterOptions(rooms: ["a"]), rooms: ["b"]), #"{"type":5,"data":{\#(opts),"rooms":["b"]},"#),
            (.disconnectSockets(options: ClusterOptions(rooms: ["a"]), close: true), #"{"type":6,"data":{\#(opts),"close":true},"#),
            (.fetchSockets(options: ClusterOptions(rooms: ["a"]), requestId: "0123456789abcdef"), #"{"type":7,"data":{\#(opts),"requestId":"0123456789abcdef"},"#),
        ]
        for (body, head) in vectors {
            let expected = json(head + #""uid":"a1b2c3d4e5f60718","nsp":"/"}"#)
            let message = ClusterMessage(uid: uid, namespace: "/", body: body)
            XCTAssertBytes(message.encode(), expected)
            XCTAssertEqual(try ClusterMessage.decode(expected), message)
        }
    }

    func testServerSideEmitAndResponses() throws {
        let vectors: [(ClusterMessage.Body, String)] = [
            (.serverSideEmit(requestId: nil, packet: ["hello", 1]), #"{"type":9,"data":{"packet":["hello",1]},"#),
            (.serverSideEmit(requestId: "1111111111111111", packet: ["q"]), #"{"type":9,"data":{"requestId":"1111111111111111","packet":["q"]},"#),
            (.serverSideEmitResponse(requestId: "1111111111111111", packet: "ok"), #"{"type":10,"data":{"requestId":"1111111111111111","packet":"ok"},"#),
            (.broadcastClientCount(requestId: "2222222222222222", clientCount: 3), #"{"type":11,"data":{"requestId":"2222222222222222","clientCount":3},"#),
            (.broadcastAck(requestId: "2222222222222222", packet: ["x": 1]), #"{"type":12,"data":{"requestId":"2222222222222222","packet":{"x":1}},"#),
            (.fetchSocketsResponse(requestId: "3333333333333333", sockets: [
                RedisSocketDetails(id: "s1", handshake: ["query": [:]], rooms: ["s1", "r"], data: .null)
            ]), #"{"type":8,"data":{"requestId":"3333333333333333","sockets":[{"id":"s1","handshake":{"query":{}},"rooms":["s1","r"],"data":null}]},"#),
        ]
        for (body, head) in vectors {
            let expected = json(head + #""uid":"a1b2c3d4e5f60718","nsp":"/"}"#)
            let message = ClusterMessage(uid: uid, namespace: "/", body: body)
            XCTAssertBytes(message.encode(), expected)
            XCTAssertEqual(try ClusterMessage.decode(expected), message)
        }
        XCTAssertTrue(ClusterMessage(uid: uid, namespace: "/", body: vectors[3].0).isResponse)
    }

    func testBinaryAckIsMessagePack() throws {
        let expected = hex([
            "84",
            "a4 74797065 0c",  // "type": 12 (BROADCAST_ACK)
            "a4 64617461 82",  // "data": fixmap 2
            "a9 726571756573744964 b0 32323232323232323232323232323232",  // "requestId"
            "a6 7061636b6574 c4 01 ff",  // "packet": bin 8 of 1 byte
            "a3 756964 b0 61316232633364346535663630373138",
            "a3 6e7370 a1 2f",
        ])
        let message = ClusterMessage(uid: uid, namespace: "/", body: .broadcastAck(
            requestId: "2222222222222222", packet: .binary(ByteBuffer(bytes: [0xff]))
        ))
        XCTAssertBytes(message.encode(), expected)
        XCTAssertEqual(try ClusterMessage.decode(expected), message)
    }

    func testRejectsUnknownTypes() {
        XCTAssertThrowsError(try ClusterMessage.decode(json(#"{"type":99,"uid":"x","nsp":"/"}"#)))
        XCTAssertThrowsError(try ClusterMessage.decode(json(#"{"type":3,"uid":"x","nsp":"/","data":{}}"#)))
    }
}
