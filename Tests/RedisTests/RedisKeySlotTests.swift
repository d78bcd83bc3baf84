import NIOCore
import XCTest

@testable import Redis

final class RedisKeySlotTests: XCTestCase {
    func testKnownSlots() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        XCTAssertEqual(RedisKeySlot.crc16(Array("123456789".utf8)[...]), 0x31C3)
        XCTAssertEqual(RedisKeySlot.slot(of: "foo"), 12182)
        XCTAssertEqual(RedisKeySlot.slot(of: "bar"), 5061)
        XCTAssertEqual(RedisKeySlot.slot(of: "hello"), 866)
        XCTAssertEqual(RedisKeySlot.slot(of: ""), 0)
    }

    func testHashTags() {
        XCTAssertEqual(RedisKeySlot.slot(of: "{user1000}.following"), RedisKeySlot.slot(of: "{user1000}.followers"))
        XCTAssertEqual(RedisKeySlot.slot(of: "{user1000}.following"), RedisKeySlot.slot(of: "user1000"))
        XCTAssertEqual(RedisKeySlot.slot(of: "foo{bar}zap"), RedisKeySlot.slot(of: "bar"))
        // Only the first tag counts, and an empty one means no tag.
        XCTAssertEqual(RedisKeySlot.slot(of: "foo{{bar}}zap"), RedisKeySlot.slot(of: "{bar"))
        XCTAssertEqual(RedisKeySlot.slot(of: "foo{}{bar}"), Int(RedisKeySlot.crc16(Array("foo{}{bar}".utf8)[...])) % 16384)
        XCTAssertNotEqual(RedisKeySlot.slot(of: "foo{}{bar}"), RedisKeySlot.slot(of: "bar"))
    }

    func testSlotMapFromClusterSlots() throws {
        func node(_ host: String, _ port: Int64) -> RedisReply {
            .array([.bulk(ByteBuffer(string: host)), .integer(port), .bulk(ByteBuffer(string: "id"))])
        }
        let reply = RedisReply.array([
            .array([.integer(5461), .integer(10922), node("10.0.0.2", 7001), node("10.0.0.5", 7004)]),
            .array([.integer(0), .integer(5460), node("", 7000)]),
            .array([.integer(10923), .integer(16383), node("10.0.0.3", 7002)]),
        ])
        var map = try RedisSlotMap(clusterSlots: reply, reportedBy: RedisEndpoint(host: "10.0.0.1", port: 7000))
        XCTAssertEqual(map.master(ofSlot: 0), RedisEndpoint(host: "10.0.0.1", port: 7000))
        XCTAssertEqual(map.master(ofSlot: 5461), RedisEndpoint(host: "10.0.0.2", port: 7001))
        XCTAssertEqual(map.master(of: "foo"), RedisEndpoint(host: "10.0.0.3", port: 7002))
        XCTAssertEqual(map.masters.count, 3)
        map.move(slot: 12182, to: RedisEndpoint(host: "10.0.0.2", port: 7001))
        XCTAssertEqual(map.master(of: "foo"), RedisEndpoint(host: "10.0.0.2", port: 7001))
        XCTAssertEqual(map.master(ofSlot: 12181), RedisEndpoint(host: "10.0.0.3", port: 7002))
        XCTAssertEqual(map.master(ofSlot: 12183), RedisEndpoint(host: "10.0.0.3", port: 7002))
        XCTAssertThrowsError(try RedisSlotMap(clusterSlots: .array([]), reportedBy: RedisEndpoint(host: "h", port: 1)))
    }
}
