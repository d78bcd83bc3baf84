import Adapter
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Requests in the shapes `@socket.io/redis-adapter` 8.x (lib/index.ts) and
/// `@socket.io/redis-emitter` 5.x publish them; the JSON texts are what `JSON.stringify`
/// prints for the object literals in those sources.
final class RedisRequestTests: XCTestCase {
    private func decode(_ json: String) throws -> RedisRequest {
        try RedisRequest.decode(ByteBuffer(string: json))
    }

    private func assertRoundTrip(_ request: RedisRequest, json: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(String(buffer: request.encode()), json, file: file, line: line)
        XCTAssertEqual(try decode(json), request, file: file, line: line)
    }

    func testTypeNumbers() {
        let numbers: [RedisRequestType: Int64] = [
            .sockets: 0, .allRooms: 1, .remoteJoin: 2, .remoteLeave: 3, .remoteDisconnect: 4, .remoteFetch: 5,
            .serverSideEmit: 6, .broadcast: 7, .broadcastClientCount: 8, .broadcastAck: 9,
        ]
        for (type, number) in numbers { XCTAssertEqual(type.rawValue, number) }
    }

    func testAllRooms() {
        // allRooms(): JSON.stringify({uid, requestId, type: RequestType.ALL_ROOMS})
        let request = RedisRequest.allRooms(uid: "aB3dE6", requestId: "xYz123")
        assertRoundTrip(request, json: #"{"uid":"aB3dE6","requestId":"xYz123","type":1}"#)
        XCTAssertEqual(request.type, .allRooms)
        XCTAssertEqual(request.uid, "aB3dE6")
        XCTAssertEqual(request.requestId, "xYz123")
    }

    func testRemoteJoinAndLeave() {
        // addSockets(opts, rooms): {uid, type: REMOTE_JOIN, opts: {rooms, except}, rooms}
        let selector = RedisSelector(rooms: ["room1"], except: ["sid9"])
        assertRoundTrip(
            .remoteJoin(uid: "aB3dE6", selector: selector, rooms: ["room2", "room3"]),
            json: #"{"uid":"aB3dE6","type":2,"opts":{"rooms":["room1"],"except":["sid9"]},"rooms":["room2","room3"]}"#
        )
        // delSockets(opts, rooms): the same with REMOTE_LEAVE
        assertRoundTrip(
            .remoteLeave(uid: "aB3dE6", selector: RedisSelector(), rooms: ["room2"]),
            json: #"{"uid":"aB3dE6","type":3,"opts":{"rooms":[],"except":[]},"rooms":["room2"]}"#
        )
    }

    func testRemoteDisconnect() {
        // disconnectSockets(opts, close): {uid, type: REMOTE_DISCONNECT, opts, close}
        let request = RedisRequest.remoteDisconnect(uid: "aB3dE6", selector: RedisSelector(rooms: ["room1"]), close: true)
        assertRoundTrip(request, json: #"{"uid":"aB3dE6","type":4,"opts":{"rooms":["room1"],"except":[]},"close":true}"#)
        XCTAssertNil(request.requestId)
    }

    func testRemoteFetch() {
        // fetchSockets(opts): {uid, requestId, type: REMOTE_FETCH, opts: {rooms, except}}
        assertRoundTrip(
            .remoteFetch(uid: "aB3dE6", requestId: "xYz123", selector: RedisSelector(rooms: ["room1"])),
            json: #"{"uid":"aB3dE6","requestId":"xYz123","type":5,"opts":{"rooms":["room1"],"except":[]}}"#
        )
    }

    func testServerSideEmit() {
        // serverSideEmit(packet): {uid, type: SERVER_SIDE_EMIT, data: packet}
        assertRoundTrip(
            .serverSideEmit(uid: "aB3dE6", requestId: nil, data: ["hello", ["a": 1]]),
            json: #"{"uid":"aB3dE6","type":6,"data":["hello",{"a":1}]}"#
        )
        // serverSideEmitWithAck: {uid, requestId, type, data}; the ack function is popped first.
        assertRoundTrip(
            .serverSideEmit(uid: "aB3dE6", requestId: "xYz123", data: ["ping"]),
            json: #"{"uid":"aB3dE6","requestId":"xYz123","type":6,"data":["ping"]}"#
        )
    }

    func testServerSideEmitWritesBinaryAsNodeBuffersDo() {
        // JSON.stringify(Buffer.from([1, 2])) is {"type":"Buffer","data":[1,2]}.
        let request = RedisRequest.serverSideEmit(uid: "u", requestId: nil, data: ["file", .binary(ByteBuffer(bytes: [1, 2]))])
        XCTAssertEqual(String(buffer: request.encode()), #"{"uid":"u","type":6,"data":["file",{"type":"Buffer","data":[1,2]}]}"#)
    }

    func testBroadcastWithAckIsMessagePack() throws {
        // io.timeout(1000).emit("ping", cb) on node "abc123": broadcastWithAck encodes
        // {uid, requestId, type: BROADCAST, packet, opts: {rooms, except, flags}} with notepack.
        let expected = hex([
            "85",  // fixmap 5
            "a3 756964 a6 616263313233",  // "uid": "abc123"
            "a9 726571756573744964 a6 726571303031",  // "requestId": "req001"
            "a4 74797065 07",  // "type": 7
            "a6 7061636b6574 83",  // "packet": fixmap 3
            "a4 74797065 02",  // "type": 2
            "a4 64617461 91 a4 70696e67",  // "data": ["ping"]
            "a3 6e7370 a1 2f",  // "nsp": "/"
            "a4 6f707473 83",  // "opts": fixmap 3
            "a5 726f6f6d73 90",  // "rooms": []
            "a6 657863657074 90",  // "except": []
            "a5 666c616773 81 a7 74696d656f7574 cd 03e8",  // "flags": {timeout: 1000}
        ])
        let broadcast = RedisBroadcast(
            uid: "abc123",
            packet: SocketIOPacket(type: .event, namespace: "/", data: ["ping"]),
            flags: RedisBroadcastFlags(timeout: 1000)
        )
        let request = RedisRequest.broadcastWithAck(requestId: "req001", broadcast: broadcast)
        XCTAssertBytes(request.encode(), expected)
        XCTAssertEqual(try RedisRequest.decode(expected), request)
        XCTAssertEqual(request.type, .broadcast)
        XCTAssertEqual(request.uid, "abc123")
        XCTAssertEqual(request.requestId, "req001")
    }

    func testDecodesMessagePackWhenTheFirstByteIsNotABrace() throws {
        // A custom parser may send any request as msgpack: {uid: "u", requestId: "r", type: 1}
        let message = hex("83 a3 756964 a1 75 a9 726571756573744964 a1 72 a4 74797065 01")
        XCTAssertEqual(try RedisRequest.decode(message), .allRooms(uid: "u", requestId: "r"))
    }

    func testDecodesWhatTheEmitterSends() throws {
        // emitter.socketsJoin("room1"): no uid at all
        XCTAssertEqual(
            try decode(#"{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["room1"]}"#),
            .remoteJoin(uid: nil, selector: RedisSelector(), rooms: ["room1"])
        )
        // emitter.in("room1").socketsLeave(["a", "b"])
        XCTAssertEqual(
            try decode(#"{"type":3,"opts":{"rooms":["room1"],"except":[]},"rooms":["a","b"]}"#),
            .remoteLeave(uid: nil, selector: RedisSelector(rooms: ["room1"]), rooms: ["a", "b"])
        )
        // emitter.except("vip").disconnectSockets()
        XCTAssertEqual(
            try decode(#"{"type":4,"opts":{"rooms":[],"except":["vip"]},"close":false}"#),
            .remoteDisconnect(uid: nil, selector: RedisSelector(except: ["vip"]), close: false)
        )
        // emitter.serverSideEmit("ping", 1)
        XCTAssertEqual(
            try decode(#"{"uid":"emitter","type":6,"data":["ping",1]}"#),
            .serverSideEmit(uid: "emitter", requestId: nil, data: ["ping", 1])
        )
        // Our encoding of an emitter-shaped request is the emitter's own text.
        XCTAssertEqual(
            String(buffer: RedisRequest.remoteJoin(uid: nil, selector: RedisSelector(), rooms: ["room1"]).encode()),
            #"{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["room1"]}"#
        )
    }

    func testToleratesNumericRoomsAndMissingClose() throws {
        // io.in(42).disconnectSockets() from a Node server sends the room as a number; a
        // request without "close" is falsy in Node.
        XCTAssertEqual(
            try decode(#"{"uid":"u","type":4,"opts":{"rooms":[42],"except":[]}}"#),
            .remoteDisconnect(uid: "u", selector: RedisSelector(rooms: ["42"]), close: false)
        )
    }

    func testUnsupportedAndMalformedRequests() {
        let unsupported: [(String, Int64)] = [
            (#"{"uid":"u","requestId":"r","type":0,"rooms":[]}"#, 0),  // SOCKETS, adapters before 8.0
            (#"{"uid":"u","requestId":"r","type":8,"clientCount":1}"#, 8),  // a response type
            (#"{"uid":"u","type":42}"#, 42),
        ]
        for (json, type) in unsupported {
            XCTAssertThrowsError(try decode(json)) { XCTAssertEqual($0 as? RedisWireError, .unsupportedRequestType(type)) }
        }
        let malformed = [
            #"[1,2]"#,  // starts with "[": read as msgpack, where 0x5b is a positive fixint
            #"{"uid":"u","type":1}"#,  // ALL_ROOMS without requestId
            #"{"uid":"u","type":2,"sid":"s","room":"r","requestId":"q"}"#,  // remoteJoin() before 8.0
            #"{"uid":"u","type":6,"data":"ping"}"#,  // data not an array
            #"{"uid":"u","type":"1","requestId":"r"}"#,  // type as text
            #"{"uid":"u","type":5,"requestId":"r","opts":{"rooms":[{}],"except":[]}}"#,  // room object
            #"{"uid":"u""#,  // truncated JSON
            #"{"uid":"u","requestId":"r","type":7,"opts":{}}"#,  // BROADCAST without packet
        ]
        for json in malformed {
            XCTAssertThrowsError(try decode(json), json) { XCTAssertTrue($0 is RedisWireError) }
        }
    }
}
