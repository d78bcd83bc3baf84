import NIOCore
import XCTest

@testable import Redis

/// The outbox's release after an outage, as a state machine: no sockets, times given.
final class RedisPublishGateTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func publish(_ gate: inout RedisPublishGate, _ text: String) -> RedisPublishGate.PublishAction {
        gate.publish(channel: "c", message: ByteBuffer(string: text))
    }

    private func texts(_ flush: RedisPublishGate.Flush?) -> [String] {
        flush?.entries.map { String(buffer: $0.message) } ?? []
    }

    /// Up, two subscribers counted on the request channel; then down, with `queued` waiting.
    private func gateAfterAnOutage(queued: [String]) -> RedisPublishGate {
        var gate = RedisPublishGate(outboxLimit: 10)
        XCTAssertNil(gate.linksUp(now: self.start))
        XCTAssertNil(gate.counted(["req": 2, "resp": 1], settle: nil, now: self.start))
        gate.linksDown()
        for text in queued { XCTAssertEqual(self.publish(&gate, text), .queued) }
        return gate
    }

    func testPublishesGoOutAtOnceWhileUpAndQueueWhileDown() {
        var gate = RedisPublishGate(outboxLimit: 10)
        XCTAssertEqual(self.publish(&gate, "before"), .queued, "down until the links first come up")
        XCTAssertNotNil(gate.linksUp(now: self.start), "a backlog from before the first connection settles")
        var up = RedisPublishGate(outboxLimit: 10)
        XCTAssertNil(up.linksUp(now: self.start), "nothing queued: up at once")
        XCTAssertEqual(up.phase, .up)
        XCTAssertEqual(self.publish(&up, "now"), .send)
        up.linksDown()
        XCTAssertEqual(self.publish(&up, "later"), .queued)
        XCTAssertEqual(up.outbox.count, 1)
    }

    func testBacklogGoesOutOnceTheSubscribersCountedBeforeAreBack() throws {
        var gate = self.gateAfterAnOutage(queued: ["1", "2"])
        let settle = try XCTUnwrap(gate.linksUp(now: self.start + .seconds(3)))
        XCTAssertEqual(settle.channels, ["req", "resp"])
        // Only this node is back so far.
        XCTAssertNil(gate.counted(["req": 1, "resp": 1], settle: settle.settle, now: self.start + .milliseconds(3050)))
        XCTAssertEqual(self.publish(&gate, "3"), .queued, "publishes made while settling queue behind the backlog")
        let flush = gate.counted(["req": 2, "resp": 1], settle: settle.settle, now: self.start + .milliseconds(3200))
        XCTAssertEqual(flush?.reason, .subscribersBack)
        XCTAssertEqual(flush?.waited, .milliseconds(200))
        XCTAssertEqual(self.texts(flush), ["1", "2", "3"])
        XCTAssertEqual(gate.phase, .up)
        XCTAssertEqual(self.publish(&gate, "4"), .send)
        XCTAssertNil(gate.boundReached(settle: settle.settle, now: self.start + .seconds(5)), "the bound of a finished wait does nothing")
    }

    func testBoundEndsTheWaitForANodeThatNeverComesBack() throws {
        var gate = self.gateAfterAnOutage(queued: ["1"])
        let settle = try XCTUnwrap(gate.linksUp(now: self.start))
        XCTAssertNil(gate.counted(["req": 1, "resp": 1], settle: settle.settle, now: self.start + .milliseconds(100)))
        let flush = gate.boundReached(settle: settle.settle, now: self.start + .milliseconds(1500))
        XCTAssertEqual(flush?.reason, .bound)
        XCTAssertEqual(flush?.waited, .milliseconds(1500))
        XCTAssertEqual(self.texts(flush), ["1"])
        XCTAssertNil(gate.counted(["req": 2, "resp": 1], settle: settle.settle, now: self.start + .seconds(2)), "a late count flushes nothing twice")
    }

    func testWithoutAnEarlierCountOnlyTheBoundEndsTheWait() throws {
        var gate = RedisPublishGate(outboxLimit: 10)
        _ = self.publish(&gate, "early")
        let settle = try XCTUnwrap(gate.linksUp(now: self.start))
        XCTAssertEqual(settle.channels, [])
        XCTAssertNil(gate.counted(["req": 5], settle: settle.settle, now: self.start))
        XCTAssertEqual(gate.boundReached(settle: settle.settle, now: self.start + .seconds(1))?.reason, .bound)
    }

    func testAnOutageDuringTheWaitEndsItAndTheNextWaitIgnoresTheOldTimers() throws {
        var gate = self.gateAfterAnOutage(queued: ["1"])
        let first = try XCTUnwrap(gate.linksUp(now: self.start))
        gate.linksDown()
        XCTAssertNil(gate.boundReached(settle: first.settle, now: self.start + .seconds(2)), "no flush while down")
        XCTAssertEqual(self.publish(&gate, "2"), .queued)
        let second = try XCTUnwrap(gate.linksUp(now: self.start + .seconds(3)))
        XCTAssertNotEqual(first.settle, second.settle)
        XCTAssertNil(gate.counted(["req": 2, "resp": 1], settle: first.settle, now: self.start + .seconds(3)), "a count for the old wait")
        XCTAssertNil(gate.boundReached(settle: first.settle, now: self.start + .seconds(4)), "the old wait's bound")
        XCTAssertEqual(self.texts(gate.counted(["req": 2, "resp": 1], settle: second.settle, now: self.start + .seconds(4))), ["1", "2"])
    }

    func testCountsAreRecordedOnlyWhileUpAndNotFromAWait() throws {
        var gate = self.gateAfterAnOutage(queued: ["1"])
        XCTAssertNil(gate.counted(["req": 9], settle: nil, now: self.start), "a count while down is not a count to wait for")
        XCTAssertEqual(gate.expected, ["req": 2, "resp": 1])
        let settle = try XCTUnwrap(gate.linksUp(now: self.start))
        XCTAssertNil(gate.counted(["req": 1, "resp": 1], settle: nil, now: self.start), "a sample taken before the outage answers late")
        XCTAssertEqual(gate.expected, ["req": 2, "resp": 1])
        XCTAssertNotNil(gate.counted(["req": 3, "resp": 1], settle: settle.settle, now: self.start), "more subscribers than before are enough")
        XCTAssertNil(gate.counted(["req": 3, "resp": 1], settle: nil, now: self.start))
        XCTAssertEqual(gate.expected, ["req": 3, "resp": 1], "while up, each count replaces the last")
    }

    func testAForgottenChannelIsNotAwaited() throws {
        var gate = self.gateAfterAnOutage(queued: ["1"])
        gate.forget("req")
        let settle = try XCTUnwrap(gate.linksUp(now: self.start))
        XCTAssertEqual(settle.channels, ["resp"])
        XCTAssertEqual(gate.counted(["resp": 1], settle: settle.settle, now: self.start)?.reason, .subscribersBack)
    }

    func testUnansweredPublishesGoBeforeTheQueueAndAdoptedOnesSettleToo() throws {
        var gate = RedisPublishGate(outboxLimit: 3)
        XCTAssertNil(gate.linksUp(now: self.start))
        XCTAssertNil(gate.counted(["req": 2], settle: nil, now: self.start))
        // The connection closes: its unanswered publishes come back before it is reported down.
        XCTAssertEqual(gate.requeueUnanswered([.init(channel: "c", message: ByteBuffer(string: "lost"))]), 0)
        XCTAssertEqual(self.publish(&gate, "next"), .queued, "nothing overtakes a requeued publish")
        gate.linksDown()
        let settle = try XCTUnwrap(gate.linksUp(now: self.start))
        XCTAssertEqual(self.texts(gate.counted(["req": 2], settle: settle.settle, now: self.start)), ["lost", "next"])

        // Publishes handed over while up wait for the subscribers, which move with the channel.
        let adopted = gate.adopt([.init(channel: "c", message: ByteBuffer(string: "a1")), .init(channel: "c", message: ByteBuffer(string: "a2"))], now: self.start)
        XCTAssertEqual(adopted.dropped, 0)
        let wait = try XCTUnwrap(adopted.settle)
        XCTAssertEqual(self.publish(&gate, "b"), .queued)
        XCTAssertEqual(self.publish(&gate, "c"), .queuedDroppingOldest, "the limit holds while settling")
        XCTAssertEqual(gate.outbox.dropped, 1)
        XCTAssertEqual(self.texts(gate.boundReached(settle: wait.settle, now: self.start + .seconds(1))), ["a2", "b", "c"])
    }
}
