import NIOCore
import XCTest

@testable import Redis

final class RedisOutboxTests: XCTestCase {
    private func channels(_ outbox: inout RedisOutbox) -> [String] {
        outbox.removeAll().map { "\($0.channel)=\(String(buffer: $0.message))" }
    }

    func testKeepsOrderBelowTheLimit() {
        var outbox = RedisOutbox(limit: 3)
        XCTAssertTrue(outbox.append(channel: "a", message: ByteBuffer(string: "1")))
        XCTAssertTrue(outbox.append(channel: "b", message: ByteBuffer(string: "2")))
        XCTAssertEqual(outbox.count, 2)
        XCTAssertEqual(self.channels(&outbox), ["a=1", "b=2"])
        XCTAssertEqual(outbox.count, 0)
        XCTAssertEqual(outbox.dropped, 0)
    }

    func testDropsTheOldestAtTheLimitAndCounts() {
        var outbox = RedisOutbox(limit: 2)
        for index in 1...5 {
            _ = outbox.append(channel: "c", message: ByteBuffer(string: "\(index)"))
        }
        XCTAssertEqual(outbox.dropped, 3)
        XCTAssertEqual(self.channels(&outbox), ["c=4", "c=5"])
        XCTAssertEqual(outbox.dropped, 3)
    }

    func testZeroLimitKeepsNothing() {
        var outbox = RedisOutbox(limit: 0)
        XCTAssertFalse(outbox.append(channel: "c", message: ByteBuffer(string: "x")))
        XCTAssertEqual(outbox.count, 0)
        XCTAssertEqual(outbox.dropped, 1)
    }

    func testRequeuedPublishesGoFirstAndTheOldestGoAtTheLimit() {
        var outbox = RedisOutbox(limit: 3)
        _ = outbox.append(channel: "c", message: ByteBuffer(string: "new"))
        outbox.requeue([
            .init(channel: "c", message: ByteBuffer(string: "old1")),
            .init(channel: "c", message: ByteBuffer(string: "old2")),
        ])
        XCTAssertEqual(outbox.dropped, 0)
        outbox.requeue([.init(channel: "c", message: ByteBuffer(string: "older"))])
        XCTAssertEqual(outbox.dropped, 1)
        XCTAssertEqual(self.channels(&outbox), ["c=old1", "c=old2", "c=new"])
    }
}
