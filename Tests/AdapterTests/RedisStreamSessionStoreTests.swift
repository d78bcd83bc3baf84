import Foundation
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

@testable import Adapter

/// The codecs of the streams session store, against `@socket.io/redis-streams-adapter`'s
/// lib/adapter.ts: the session as `persistSession` writes it (base64 of the msgpack of
/// `{sid, pid, rooms, data}`), and offsets as `restoreSession` accepts them
/// (`/^[0-9]+-[0-9]+$/`), ordered as Redis orders entry ids. The store's Redis side runs in
/// test_streams_recovery.py against redis-server.
final class RedisStreamSessionStoreTests: XCTestCase {
    /// `Buffer.from(encode({sid: "s1", pid: "p1", rooms: ["s1", "lobby"], data: {user: "ann",
    /// n: 3}})).toString("base64")`, as Node's @msgpack/msgpack (and python's msgpack) pack it.
    private let nodeSession = "hKNzaWSiczGjcGlkonAxpXJvb21zkqJzMaVsb2JieaRkYXRhgqR1c2Vyo2FubqFuAw=="

    func testReadsTheSessionNodeWrites() throws {
        let session = try XCTUnwrap(RedisStreamSessionStore.decode(ByteBuffer(string: nodeSession), namespace: "/chat"))
        XCTAssertEqual(session, PersistedSession(
            pid: "p1", sid: "s1", namespace: "/chat", rooms: ["s1", "lobby"], data: .object(["user": .string("ann"), "n": .int(3)])
        ))
    }

    func testWritesTheSessionAsNodeDoes() {
        let session = PersistedSession(
            pid: "p1", sid: "s1", namespace: "/", rooms: ["s1", "lobby"], data: .object(["user": .string("ann"), "n": .int(3)])
        )
        XCTAssertEqual(RedisStreamSessionStore.encode(session), nodeSession)
    }

    func testASessionWithoutDataHasNullData() throws {
        let encoded = RedisStreamSessionStore.encode(PersistedSession(pid: "p", sid: "s", namespace: "/", rooms: [], data: .null))
        let session = try XCTUnwrap(RedisStreamSessionStore.decode(ByteBuffer(string: encoded), namespace: "/"))
        XCTAssertEqual(session.data, .null)
        XCTAssertEqual(session.rooms, [])
    }

    func testWhatIsNoSessionIsRefused() {
        let notSessions: [(String, JSONValue?)] = [
            ("not base64!", nil),
            ("a string, not a map", .string("s")),
            ("no sid", .object(["pid": .string("p"), "rooms": .array([])])),
            ("no pid", .object(["sid": .string("s"), "rooms": .array([])])),
            ("no rooms", .object(["sid": .string("s"), "pid": .string("p")])),
            ("a room that is no string", .object(["sid": .string("s"), "pid": .string("p"), "rooms": .array([.int(1)])])),
        ]
        for (what, value) in notSessions {
            let text = value.map { Base64Text.of(MessagePack.encode($0)) } ?? what
            XCTAssertNil(RedisStreamSessionStore.decode(ByteBuffer(string: text), namespace: "/"), what)
        }
    }

    func testOffsetsAreEntryIdsOrderedAsRedisOrdersThem() throws {
        for text in ["", "1", "-1", "1-", "a-1", "1-1-1", "1.5-0", "+1-0", "١-٢", "18446744073709551616-0", " 1-0"] {
            XCTAssertNil(StreamEntryID(text), text)
        }
        let ids = try ["0-0", "0-1", "9-0", "10-0", "10-2", "10-10", "18446744073709551615-0"].map { try XCTUnwrap(StreamEntryID($0)) }
        XCTAssertEqual(ids, ids.sorted())
        XCTAssertEqual(Set(ids.map(\.description)).count, ids.count)
        XCTAssertEqual(ids.map(\.description), ["0-0", "0-1", "9-0", "10-0", "10-2", "10-10", "18446744073709551615-0"])
        XCTAssertEqual(StreamEntryID("0010-02")?.description, "10-2")
    }
}

/// Base64 of a buffer, for building stored values in tests.
private enum Base64Text {
    static func of(_ buffer: ByteBuffer) -> String {
        Data(buffer.readableBytesView).base64EncodedString()
    }
}
