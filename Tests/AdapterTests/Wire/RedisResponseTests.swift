import Adapter
import NIOCore
import SidecastJSON
import XCTest

/// Answers in the shapes lib/index.ts of `@socket.io/redis-adapter` 8.x publishes in
/// `onrequest`: JSON texts as `JSON.stringify` prints them, msgpack as notepack writes it.
final class RedisResponseTests: XCTestCase {
    private func assertRoundTrip(_ response: RedisResponse, json: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(String(buffer: response.encode()), json, file: file, line: line)
        XCTAssertEqual(try RedisResponse.decode(ByteBuffer(string: json)), response, file: file, line: line)
    }

    func testAllRooms() {
        // {requestId, rooms: [...this.rooms.keys()]}: no "type" member
        assertRoundTrip(.allRooms(requestId: "xYz123", rooms: ["sid1", "room1"]), json: #"{"requestId":"xYz123","rooms":["sid1","room1"]}"#)
        assertRoundTrip(.allRooms(requestId: "xYz123", rooms: []), json: #"{"requestId":"xYz123","rooms":[]}"#)
    }

    func testFetchSockets() {
        // {requestId, sockets: [{id, handshake, rooms: [...socket.rooms], data}]}
        let handshake: JSONValue = [
            "headers": ["host": "localhost:3000"], "time": "Thu Nov 23 2026 13:00:00 GMT+0000 (Coordinated Universal Time)",
            "address": "::1", "xdomain": false, "secure": false, "issued": 1_795_438_800_000,
            "url": "/socket.io/?EIO=4&transport=polling", "query": ["EIO": "4", "transport": "polling"], "auth": [:],
        ]
        let socket = RedisSocketDetails(id: "sid1", handshake: handshake, rooms: ["sid1", "room1"], data: ["user": "ann"])
        let json =
            #"{"requestId":"xYz123","sockets":[{"id":"sid1","handshake":{"headers":{"host":"localhost:3000"},"#
            + #""time":"Thu Nov 23 2026 13:00:00 GMT+0000 (Coordinated Universal Time)","address":"::1","xdomain":false,"#
            + #""secure":false,"issued":1795438800000,"url":"/socket.io/?EIO=4&transport=polling","#
            + #""query":{"EIO":"4","transport":"polling"},"auth":{}},"rooms":["sid1","room1"],"data":{"user":"ann"}}]}"#
        assertRoundTrip(.fetchSockets(requestId: "xYz123", sockets: [socket]), json: json)
    }

    func testFetchSocketsToleratesMissingMembers() throws {
        // socket.data undefined is left out by JSON.stringify.
        let decoded = try RedisResponse.decode(ByteBuffer(string: #"{"requestId":"r","sockets":[{"id":"s","rooms":["s"]}]}"#))
        XCTAssertEqual(decoded, .fetchSockets(requestId: "r", sockets: [RedisSocketDetails(id: "s", handshake: [:], rooms: ["s"], data: .null)]))
        XCTAssertEqual(try RedisResponse.decode(ByteBuffer(string: #"{"requestId":"r","sockets":[]}"#)), .fetchSockets(requestId: "r", sockets: []))
    }

    func testServerSideEmit() {
        // {type: SERVER_SIDE_EMIT, requestId, data: arg}
        assertRoundTrip(.serverSideEmit(requestId: "xYz123", data: "pong"), json: #"{"type":6,"requestId":"xYz123","data":"pong"}"#)
        // callback() with no argument: data is undefined and JSON leaves it out.
        assertRoundTrip(.serverSideEmit(requestId: "xYz123", data: nil), json: #"{"type":6,"requestId":"xYz123"}"#)
    }

    func testBroadcastClientCount() {
        // {type: BROADCAST_CLIENT_COUNT, requestId, clientCount}
        assertRoundTrip(.broadcastClientCount(requestId: "req001", clientCount: 3), json: #"{"type":8,"requestId":"req001","clientCount":3}"#)
    }

    func testBroadcastAckIsMessagePack() throws {
        // this.parser.encode({type: BROADCAST_ACK, requestId, packet: arg})
        let expected = hex([
            "83",  // fixmap 3
            "a4 74797065 09",  // "type": 9
            "a9 726571756573744964 a6 726571303031",  // "requestId": "req001"
            "a6 7061636b6574 a2 6f6b",  // "packet": "ok"
        ])
        let response = RedisResponse.broadcastAck(requestId: "req001", packet: "ok")
        XCTAssertBytes(response.encode(), expected)
        XCTAssertEqual(try RedisResponse.decode(expected), response)

        // An acknowledgement with binary data keeps it as bin; with no argument, notepack 3
        // leaves the undefined member out.
        let binary = RedisResponse.broadcastAck(requestId: "r", packet: ["ok", .binary(ByteBuffer(bytes: [7]))])
        XCTAssertBytes(binary.encode(), hex("83 a4 74797065 09 a9 726571756573744964 a1 72 a6 7061636b6574 92 a2 6f6b c4 01 07"))
        XCTAssertEqual(try RedisResponse.decode(binary.encode()), binary)
        let empty = RedisResponse.broadcastAck(requestId: "r", packet: nil)
        XCTAssertBytes(empty.encode(), hex("82 a4 74797065 09 a9 726571756573744964 a1 72"))
        XCTAssertEqual(try RedisResponse.decode(empty.encode()), empty)
    }

    func testRequestIdAccessor() {
        XCTAssertEqual(RedisResponse.broadcastClientCount(requestId: "a", clientCount: 0).requestId, "a")
        XCTAssertEqual(RedisResponse.allRooms(requestId: "b", rooms: []).requestId, "b")
    }

    func testResponseChannels() {
        let channels = RedisChannels(namespace: "/chat")
        let fetch = RedisRequest.remoteFetch(uid: "aB3dE6", requestId: "r", selector: RedisSelector())
        let answer = RedisResponse.fetchSockets(requestId: "r", sockets: [])
        XCTAssertEqual(answer.channel(answering: fetch, in: channels), "socket.io-response#/chat#")
        XCTAssertEqual(answer.channel(answering: fetch, in: channels, publishOnSpecificResponseChannel: true), "socket.io-response#/chat#aB3dE6#")
        // Node publishes server-side-emit answers on the shared channel whatever the option says.
        let emit = RedisRequest.serverSideEmit(uid: "aB3dE6", requestId: "r", data: ["e"])
        let emitAnswer = RedisResponse.serverSideEmit(requestId: "r", data: nil)
        XCTAssertEqual(emitAnswer.channel(answering: emit, in: channels, publishOnSpecificResponseChannel: true), "socket.io-response#/chat#")
    }

    func testMalformedResponses() {
        let cases = [
            #"{"rooms":["a"]}"#,  // no requestId
            #"{"requestId":"r"}"#,  // the legacy remoteJoin answer: nothing to tell its kind by
            #"{"requestId":"r","sockets":["sid1"]}"#,  // the SOCKETS answer of adapters before 8.0
            #"{"type":8,"requestId":"r"}"#,  // no clientCount
            #"{"type":8,"requestId":"r","clientCount":-1}"#,
            #"{"type":3,"requestId":"r"}"#,  // not a response type
            #"{"requestId":"r","rooms":"a"}"#,
        ]
        for json in cases {
            XCTAssertThrowsError(try RedisResponse.decode(ByteBuffer(string: json)), json) { XCTAssertTrue($0 is RedisWireError) }
        }
    }
}
