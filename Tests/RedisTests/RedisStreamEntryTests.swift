import NIOCore
import XCTest

@testable import Redis

/// `XREAD` and `XRANGE` replies as RESP2 shapes them (redis.io/commands/xread, /xrange).
final class RedisStreamEntryTests: XCTestCase {
    private func bulk(_ text: String) -> RedisReply { .bulk(ByteBuffer(string: text)) }

    private func entry(_ id: String, _ fields: [String]) -> RedisReply {
        .array([bulk(id), .array(fields.map(bulk))])
    }

    func testReadsEntriesInStreamOrder() throws {
        let reply = RedisReply.array([
            .array([bulk("socket.io"), .array([
                entry("1700000000000-0", ["uid", "a", "nsp", "/", "type", "2"]),
                entry("1700000000000-1", ["uid", "b", "nsp", "/chat", "type", "3", "data", "{}"]),
            ])])
        ])
        let entries = try RedisStreamEntry.entries(ofRead: reply)
        XCTAssertEqual(entries.map(\.id), ["1700000000000-0", "1700000000000-1"])
        XCTAssertEqual(entries[0].fields, ["uid": ByteBuffer(string: "a"), "nsp": ByteBuffer(string: "/"), "type": ByteBuffer(string: "2")])
        XCTAssertEqual(entries[1].fields["data"], ByteBuffer(string: "{}"))
    }

    func testABlockThatTimedOutReadsNothing() throws {
        XCTAssertEqual(try RedisStreamEntry.entries(ofRead: .null), [])
    }

    func testRangeReplies() throws {
        XCTAssertEqual(try RedisStreamEntry.entries(ofRange: .array([])), [])
        let entries = try RedisStreamEntry.entries(ofRange: .array([entry("5-1", ["k", "v"])]))
        XCTAssertEqual(entries, [RedisStreamEntry(id: "5-1", fields: ["k": ByteBuffer(string: "v")])])
    }

    func testRefusesWhatIsNotAStreamReply() {
        XCTAssertThrowsError(try RedisStreamEntry.entries(ofRead: .error("WRONGTYPE Operation against a key holding the wrong kind of value"))) { error in
            XCTAssertEqual(error as? RedisClientError, .commandFailed("WRONGTYPE Operation against a key holding the wrong kind of value"))
        }
        XCTAssertThrowsError(try RedisStreamEntry.entries(ofRead: .integer(1)))
        XCTAssertThrowsError(try RedisStreamEntry.entries(ofRange: .array([.array([bulk("1-0")])])))
        XCTAssertThrowsError(try RedisStreamEntry.entries(ofRange: .array([entry("1-0", ["odd"])])))
        XCTAssertThrowsError(try RedisStreamEntry.entries(ofRange: .array([.array([bulk("1-0"), .array([bulk("k"), .integer(1)])])])))
    }
}
