import Adapter
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Broadcast messages as `@socket.io/redis-adapter` 8.x publishes them: notepack's encoding of
/// `[this.uid, packet, {rooms: [...opts.rooms], except: [...opts.except], flags: opts.flags}]`,
/// where `packet` is the `{type: 2, data}` object socket.io's BroadcastOperator builds and the
/// adapter then gives an `nsp` member.
final class RedisBroadcastTests: XCTestCase {
    /// `[uid, {type: 2, data: ["hello", "world"], nsp: "/"}, ` up to the options.
    private let helloWorldHead = [
        "93",  // fixarray 3: [uid, packet, opts]
        "a6 616263313233",  // fixstr 6 "abc123" (the adapter's uid2(6))
        "83",  // fixmap 3: the packet
        "a4 74797065 02",  // "type": 2 (EVENT)
        "a4 64617461 92",  // "data": fixarray 2
        "a5 68656c6c6f",  // "hello"
        "a5 776f726c64",  // "world"
        "a3 6e7370 a1 2f",  // "nsp": "/"
    ]

    private func helloWorld(rooms: [String] = [], except: [String] = [], flags: RedisBroadcastFlags = .init()) -> RedisBroadcast {
        RedisBroadcast(
            uid: "abc123",
            packet: SocketIOPacket(type: .event, namespace: "/", data: ["hello", "world"]),
            rooms: rooms,
            except: except,
            flags: flags
        )
    }

    func testBroadcastToAll() throws {
        // io.emit("hello", "world")
        let expected = hex(
            helloWorldHead + [
                "83",  // fixmap 3: opts
                "a5 726f6f6d73 90",  // "rooms": []
                "a6 657863657074 90",  // "except": []
                "a5 666c616773 80",  // "flags": {}
            ]
        )
        let broadcast = helloWorld()
        XCTAssertBytes(broadcast.encode(), expected)
        XCTAssertEqual(broadcast.channel(), "socket.io#/#")
        XCTAssertEqual(try RedisBroadcast.decode(expected), broadcast)
    }

    func testBroadcastToOneRoom() throws {
        // io.to("room1").emit("hello", "world")
        let expected = hex(
            helloWorldHead + [
                "83",
                "a5 726f6f6d73 91 a5 726f6f6d31",  // "rooms": ["room1"]
                "a6 657863657074 90",  // "except": []
                "a5 666c616773 80",  // "flags": {}
            ]
        )
        let broadcast = helloWorld(rooms: ["room1"])
        XCTAssertBytes(broadcast.encode(), expected)
        XCTAssertEqual(broadcast.channel(), "socket.io#/#room1#")
        XCTAssertEqual(broadcast.channel(prefix: "app"), "app#/#room1#")
        XCTAssertEqual(helloWorld(rooms: ["room1", "room2"]).channel(), "socket.io#/#")
        XCTAssertEqual(try RedisBroadcast.decode(expected), broadcast)
    }

    func testBroadcastWithExcept() throws {
        // socket.broadcast.emit("hello", "world") from socket "sid1": except holds its own id.
        let expected = hex(
            helloWorldHead + [
                "83",
                "a5 726f6f6d73 90",  // "rooms": []
                "a6 657863657074 91 a4 73696431",  // "except": ["sid1"]
                "a5 666c616773 80",  // "flags": {}
            ]
        )
        let broadcast = helloWorld(except: ["sid1"])
        XCTAssertBytes(broadcast.encode(), expected)
        XCTAssertEqual(try RedisBroadcast.decode(expected), broadcast)
    }

    func testVolatileFlag() throws {
        // io.volatile.emit("hello", "world"): flags = Object.assign({}, {}, {volatile: true})
        let expected = hex(
            helloWorldHead + [
                "83",
                "a5 726f6f6d73 90",
                "a6 657863657074 90",
                "a5 666c616773 81",  // "flags": fixmap 1
                "a8 766f6c6174696c65 c3",  // "volatile": true
            ]
        )
        let broadcast = helloWorld(flags: RedisBroadcastFlags(volatile: true))
        XCTAssertBytes(broadcast.encode(), expected)
        let decoded = try RedisBroadcast.decode(expected)
        XCTAssertTrue(decoded.flags.volatile)
        XCTAssertFalse(decoded.flags.local)
        XCTAssertNil(decoded.flags.compress)
    }

    func testBinaryArgumentIsBin8AndTypeStaysEvent() throws {
        // io.to("room1").emit("file", Buffer.from([1, 2, 3])): the Buffer is msgpack bin and the
        // type stays 2; socket.io-parser makes it BINARY_EVENT only when writing for clients.
        let expected = hex([
            "93",
            "a6 616263313233",  // "abc123"
            "83",
            "a4 74797065 02",  // "type": 2
            "a4 64617461 92",  // "data": fixarray 2
            "a4 66696c65",  // "file"
            "c4 03 010203",  // bin 8 of 3 bytes
            "a3 6e7370 a5 2f63686174",  // "nsp": "/chat"
            "83",
            "a5 726f6f6d73 91 a5 726f6f6d31",  // "rooms": ["room1"]
            "a6 657863657074 90",
            "a5 666c616773 80",
        ])
        let packet = SocketIOPacket(type: .binaryEvent, namespace: "/chat", data: ["file", .binary(ByteBuffer(bytes: [1, 2, 3]))])
        let broadcast = RedisBroadcast(uid: "abc123", packet: packet, rooms: ["room1"])
        XCTAssertBytes(broadcast.encode(), expected)
        XCTAssertEqual(broadcast.channel(), "socket.io#/chat#room1#")
        let decoded = try RedisBroadcast.decode(expected)
        XCTAssertEqual(decoded.packet.type, .event)
        XCTAssertEqual(decoded.packet.data, ["file", .binary(ByteBuffer(bytes: [1, 2, 3]))])
    }

    func testAckIdFollowsNamespace() {
        let packet = SocketIOPacket(type: .event, namespace: "/", id: 7, data: ["x"])
        let expected = hex([
            "93 a1 75",  // [ "u",
            "84",  // fixmap 4: type, data, nsp, id
            "a4 74797065 02",
            "a4 64617461 91 a1 78",  // "data": ["x"]
            "a3 6e7370 a1 2f",
            "a2 6964 07",  // "id": 7
            "83 a5 726f6f6d73 90 a6 657863657074 90 a5 666c616773 80",
        ])
        XCTAssertBytes(RedisBroadcast(uid: "u", packet: packet).encode(), expected)
    }

    func testDecodesWhatTheEmitterSends() throws {
        // emitter.to("room1").volatile.emit("ev", 1): uid "emitter", and its options are
        // {rooms, flags, except}, in that order.
        let message = hex([
            "93",
            "a7 656d6974746572",  // "emitter"
            "83",
            "a4 74797065 02",  // "type": 2
            "a4 64617461 92 a2 6576 01",  // "data": ["ev", 1]
            "a3 6e7370 a1 2f",  // "nsp": "/"
            "83",
            "a5 726f6f6d73 91 a5 726f6f6d31",  // "rooms": ["room1"]
            "a5 666c616773 81 a8 766f6c6174696c65 c3",  // "flags": {volatile: true}
            "a6 657863657074 90",  // "except": []
        ])
        let decoded = try RedisBroadcast.decode(message)
        XCTAssertEqual(decoded.uid, "emitter")
        XCTAssertEqual(decoded.packet, SocketIOPacket(type: .event, namespace: "/", data: ["ev", 1]))
        XCTAssertEqual(decoded.rooms, ["room1"])
        XCTAssertEqual(decoded.except, [])
        XCTAssertTrue(decoded.flags.volatile)
    }

    func testToleratesANodeServersExtras() throws {
        // A packet with nsp first (some socket.io versions build {nsp, type, data}), numeric
        // rooms (io.to(42)), and flags this type doesn't model: they survive a round trip.
        let message = hex([
            "93 a6 4e6f64653031",  // [ "Node01",
            "83",
            "a3 6e7370 a5 2f63686174",  // "nsp": "/chat"
            "a4 74797065 02",  // "type": 2
            "a4 64617461 91 a1 65",  // "data": ["e"]
            "84",  // opts: fixmap 4 (an unknown member too)
            "a5 726f6f6d73 92 2a a1 62",  // "rooms": [42, "b"]
            "a6 657863657074 90",
            "a5 666c616773 82",  // "flags": fixmap 2
            "a7 74696d656f7574 cd 1388",  // "timeout": 5000
            "b4 65787065637453696e676c65526573706f6e7365 c3",  // "expectSingleResponse": true
            "a5 6578747261 c0",  // "extra": nil
        ])
        let decoded = try RedisBroadcast.decode(message)
        XCTAssertEqual(decoded.packet.namespace, "/chat")
        XCTAssertEqual(decoded.rooms, ["42", "b"])
        XCTAssertEqual(decoded.flags.timeout, 5000)
        XCTAssertEqual(decoded.flags.members["expectSingleResponse"], true)
        XCTAssertEqual(try RedisBroadcast.decode(decoded.encode()), decoded)
    }

    func testPacketWithoutNamespaceIsForTheMainNamespace() throws {
        let message = hex("93 a1 75 82 a4 74797065 02 a4 64617461 91 a1 65 80")  // ["u", {type: 2, data: ["e"]}, {}]
        let decoded = try RedisBroadcast.decode(message)
        XCTAssertEqual(decoded.packet.namespace, "/")
        XCTAssertEqual(decoded.rooms, [])
        XCTAssertEqual(try RedisBroadcast.decode(message, ignoringUID: "other", namespace: "/")?.uid, "u")
    }

    func testSkipsOwnMessagesAndOtherNamespacesBeforeConverting() throws {
        let message = helloWorld().encode()
        XCTAssertNil(try RedisBroadcast.decode(message, ignoringUID: "abc123", namespace: nil))
        XCTAssertNil(try RedisBroadcast.decode(message, ignoringUID: "zzz", namespace: "/chat"))
        XCTAssertEqual(try RedisBroadcast.decode(message, ignoringUID: "zzz", namespace: "/"), helloWorld())
        // A skipped message is not converted, so a payload this type would reject is not an error.
        let ownMalformed = hex("93 a6 616263313233 c0 c0")  // ["abc123", nil, nil]
        XCTAssertNil(try RedisBroadcast.decode(ownMalformed, ignoringUID: "abc123", namespace: nil))
        XCTAssertThrowsError(try RedisBroadcast.decode(ownMalformed))
    }

    func testRejectsMalformedMessages() {
        let cases: [ByteBuffer] = [
            hex("c0"),  // nil
            hex("91 a1 75"),  // ["u"]
            hex("93 01 80 80"),  // [1, {}, {}]: uid not a string
            hex("93 a1 75 81 a4 74797065 07 80"),  // packet type 7
            hex("93 a1 75 81 a4 74797065 02 81 a5 726f6f6d73 01"),  // rooms: 1
            hex("93 a1 75 81 a4 74797065 02 81 a5 666c616773 01"),  // flags: 1
            hex("93 a1 75 81 a4 74797065 02 80 c0"),  // trailing byte
            hex("93 a1 75 81 a4 74797065 02"),  // truncated
        ]
        for message in cases {
            XCTAssertThrowsError(try RedisBroadcast.decode(message), hexString(message)) { error in
                XCTAssertTrue(error is RedisWireError)
            }
        }
    }

    func testFlagAccessors() {
        var flags = RedisBroadcastFlags(volatile: true, compress: false, local: true, timeout: 1000)
        XCTAssertEqual(Array(flags.members.keys), ["volatile", "compress", "local", "timeout"])
        flags.volatile = false
        flags.compress = nil
        XCTAssertEqual(flags.members, ["local": true, "timeout": 1000])
        XCTAssertEqual(RedisBroadcastFlags().members, [:])
    }
}
