import DequeModule
import NIOCore

/// Decides when a publish goes out: at once while Redis is up and nothing waits, else into the
/// outbox; and after an outage, when the outbox is sent.
///
/// Redis pub/sub delivers only to current subscribers, so a backlog sent before the other nodes
/// resubscribed is lost. While up, the gate keeps the subscriber counts of the watched channels
/// (every node of a cluster subscribes the same ones); after the links come back, the backlog
/// waits until Redis counts at least as many subscribers again ("subscribers back") or until
/// the bound passes (a node that never comes back). Publishes made meanwhile queue behind the
/// backlog, so the order is kept.
///
/// A value type driven by events, returning what to do: the connection that owns it sends,
/// counts and schedules.
struct RedisPublishGate {
    enum Phase: Equatable {
        /// The links are not both up: publishes queue.
        case down
        /// The links are up and a backlog waits for the subscribers; `settle` tells this wait
        /// from an earlier one, whose timers and counts must not end it.
        case settling(since: NIODeadline, settle: Int)
        /// Publishes go out at once unless something waits before them.
        case up
    }

    /// Why a backlog went out.
    enum FlushReason: String, Sendable {
        /// Redis counted at least the subscribers it counted before the outage.
        case subscribersBack = "subscribers_back"
        /// The settle bound passed first.
        case bound
    }

    /// A backlog to send now, oldest first.
    struct Flush {
        var entries: Deque<RedisOutbox.Entry>
        var reason: FlushReason
        var waited: TimeAmount
    }

    enum PublishAction: Equatable {
        case send
        case queued
        /// Queued, and the outbox dropped its oldest publish (or this one, with a limit of 0).
        case queuedDroppingOldest
    }

    /// What to do once the links are up with a backlog: count `channels` every poll interval
    /// (none known: only the bound can end the wait) and flush when `bound` passes.
    struct Settle: Equatable {
        var settle: Int
        var channels: [String]
    }

    private(set) var phase: Phase = .down
    private(set) var outbox: RedisOutbox
    /// Subscriber counts of the watched channels, last seen while up.
    private(set) var expected: [String: Int] = [:]
    private var settles = 0

    init(outboxLimit: Int) {
        self.outbox = RedisOutbox(limit: outboxLimit)
    }

    var isSettling: Bool {
        if case .settling = self.phase { return true }
        return false
    }

    mutating func publish(channel: String, message: ByteBuffer) -> PublishAction {
        if self.phase == .up, self.outbox.count == 0 { return .send }
        return self.outbox.append(channel: channel, message: message) ? .queued : .queuedDroppingOldest
    }

    /// Both links are up (again) at `now`: nothing waits, or the backlog starts to settle.
    mutating func linksUp(now: NIODeadline) -> Settle? {
        guard self.phase == .down else { return nil }
        guard self.outbox.count > 0 else {
            self.phase = .up
            return nil
        }
        return self.startSettling(now: now)
    }

    /// A link went down: publishes queue until both are up again, and any wait ends unflushed.
    mutating func linksDown() {
        self.phase = .down
    }

    /// Publishes a lost connection never confirmed, older than anything queued; the link is
    /// about to be reported down.
    mutating func requeueUnanswered(_ entries: [RedisOutbox.Entry]) -> Int {
        let before = self.outbox.dropped
        self.outbox.requeue(entries)
        return self.outbox.dropped - before
    }

    /// Publishes handed over from another connection (their channel's node changed), older than
    /// anything queued. They wait for the subscribers too, since those move along with the
    /// channel; returns the publishes dropped and the wait to start, if any.
    mutating func adopt(_ entries: [RedisOutbox.Entry], now: NIODeadline) -> (dropped: Int, settle: Settle?) {
        let dropped = self.requeueUnanswered(entries)
        guard self.phase == .up, self.outbox.count > 0 else { return (dropped, nil) }
        return (dropped, self.startSettling(now: now))
    }

    /// Redis counted the subscribers of the watched channels: while up, the counts to wait for
    /// after the next outage; while settling, the backlog's release once every count is back.
    mutating func counted(_ counts: [String: Int], settle: Int?, now: NIODeadline) -> Flush? {
        switch self.phase {
        case .up:
            if settle == nil { self.expected = counts }
            return nil
        case .settling(let since, let current):
            guard settle == current, !self.expected.isEmpty,
                self.expected.allSatisfy({ counts[$0.key, default: 0] >= $0.value })
            else { return nil }
            return self.flush(.subscribersBack, since: since, now: now)
        case .down:
            return nil
        }
    }

    /// The settle bound of wait `settle` passed.
    mutating func boundReached(settle: Int, now: NIODeadline) -> Flush? {
        guard case .settling(let since, let current) = self.phase, current == settle else { return nil }
        return self.flush(.bound, since: since, now: now)
    }

    /// A channel no longer subscribed here: its count is no longer awaited.
    mutating func forget(_ channel: String) {
        self.expected[channel] = nil
    }

    /// Everything queued, for a last send at shutdown or to hand to another connection.
    mutating func takeAll() -> Deque<RedisOutbox.Entry> {
        self.outbox.removeAll()
    }

    private mutating func startSettling(now: NIODeadline) -> Settle {
        self.settles += 1
        self.phase = .settling(since: now, settle: self.settles)
        return Settle(settle: self.settles, channels: self.expected.keys.sorted())
    }

    private mutating func flush(_ reason: FlushReason, since: NIODeadline, now: NIODeadline) -> Flush {
        self.phase = .up
        return Flush(entries: self.outbox.removeAll(), reason: reason, waited: now - since)
    }
}
