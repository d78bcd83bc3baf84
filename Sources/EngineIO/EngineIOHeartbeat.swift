import NIOCore

/// The heartbeats of all of a server's sessions, driven by one timer on its event loop.
///
/// A scheduled task per session per ping cost about 300 bytes per idle connection and one
/// wake-up of the loop per ping. Every session waits out the same `pingInterval` and the
/// same `pingTimeout`, so deadlines come due in the order they are set: two FIFO queues
/// stay sorted by themselves, and a single timer is armed for the earliest head.
///
/// Cancelling clears the session's entry in place (found from its sequence number), so a
/// closed session is released at once; emptied entries are dropped when they reach the head.
///
/// Pings due within `coalescingWindow` of a wake-up are sent in that wake-up, slightly
/// early, so a busy server wakes a few times per second rather than once per ping. Ping
/// timeouts are never early: a session gets its full `pingTimeout`.
final class EngineIOHeartbeat {
    /// Where a session's entry is: which queue, and its sequence number there. One word, as
    /// every session keeps one: 0 for none, else (sequence + 1) << 2 | queue.
    struct Slot: Equatable {
        private var raw: UInt64

        static let none = Slot(raw: 0)

        private init(raw: UInt64) {
            self.raw = raw
        }

        fileprivate init(_ queue: QueueKind, sequence: UInt64) {
            self.raw = (sequence + 1) << 2 | queue.rawValue
        }

        fileprivate var queue: QueueKind { QueueKind(rawValue: self.raw & 3)! }
        fileprivate var sequence: UInt64 { (self.raw >> 2) - 1 }
    }

    fileprivate enum QueueKind: UInt64 {
        case ping = 0
        case pong = 1
        /// An Engine.IO v3 session waiting for its client's next ping.
        case clientPing = 2
    }

    private struct Entry {
        /// Nil once the session cancelled.
        var session: EngineIOSession?
        let deadline: NIODeadline
    }

    /// Entries in deadline order, numbered by a sequence that survives popping the head.
    private struct Queue {
        var entries = CircularBuffer<Entry>()
        /// The sequence number of `entries.first`.
        var headSequence: UInt64 = 0

        mutating func append(_ entry: Entry) -> UInt64 {
            self.entries.append(entry)
            return self.headSequence + UInt64(self.entries.count - 1)
        }

        mutating func clear(_ sequence: UInt64) {
            guard sequence >= self.headSequence, sequence - self.headSequence < UInt64(self.entries.count) else { return }
            let index = self.entries.index(self.entries.startIndex, offsetBy: Int(sequence - self.headSequence))
            self.entries[index].session = nil
        }

        mutating func popFirst(dueBy deadline: NIODeadline) -> Entry? {
            guard let head = self.entries.first, head.deadline <= deadline else { return nil }
            self.headSequence += 1
            return self.entries.removeFirst()
        }

        mutating func dropClearedHeads() {
            while let head = self.entries.first, head.session == nil {
                self.entries.removeFirst()
                self.headSequence += 1
            }
        }

        mutating func removeAll() {
            self.headSequence += UInt64(self.entries.count)
            self.entries.removeAll()
        }
    }

    private let eventLoop: EventLoop
    private let pingInterval: TimeAmount
    private let pingTimeout: TimeAmount
    let coalescingWindow: TimeAmount
    /// Sessions waiting out the interval before their next ping.
    private var pings = Queue()
    /// Sessions that were pinged and owe a pong.
    private var timeouts = Queue()
    /// Engine.IO v3 sessions, whose clients ping: each must ping again within
    /// pingInterval + pingTimeout (Node's `resetPingTimeout` for protocol 3).
    private var clientPings = Queue()
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    /// While due entries are handled: the timer is armed once at the end.
    private var isFiring = false

    init(eventLoop: EventLoop, pingInterval: TimeAmount, pingTimeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.coalescingWindow = min(.milliseconds(100), .nanoseconds(pingInterval.nanoseconds / 10))
    }

    /// Entries in both queues, cleared ones not yet dropped included.
    var queuedEntryCount: Int { self.pings.entries.count + self.timeouts.entries.count + self.clientPings.entries.count }

    /// Whether the shared timer is armed.
    var isTimerArmed: Bool { self.timer != nil }

    /// Sends `session` a ping after `pingInterval`, replacing what it waited for before.
    func schedulePing(for session: EngineIOSession) {
        self.cancel(session)
        let deadline = self.eventLoop.now + self.pingInterval
        let sequence = self.pings.append(Entry(session: session, deadline: deadline))
        session.heartbeatSlot = Slot(.ping, sequence: sequence)
        self.armUnlessFiring(at: deadline)
    }

    /// Closes the v3 `session` with "ping timeout" unless its client pings within
    /// pingInterval + pingTimeout, replacing what it waited for before.
    func expectClientPing(from session: EngineIOSession) {
        self.cancel(session)
        let deadline = self.eventLoop.now + self.pingInterval + self.pingTimeout
        let sequence = self.clientPings.append(Entry(session: session, deadline: deadline))
        session.heartbeatSlot = Slot(.clientPing, sequence: sequence)
        self.armUnlessFiring(at: deadline)
    }

    /// Closes `session` with "ping timeout" unless it answers within `pingTimeout`.
    private func scheduleTimeout(for session: EngineIOSession) {
        self.cancel(session)
        let deadline = self.eventLoop.now + self.pingTimeout
        let sequence = self.timeouts.append(Entry(session: session, deadline: deadline))
        session.heartbeatSlot = Slot(.pong, sequence: sequence)
        self.armUnlessFiring(at: deadline)
    }

    /// Forgets what `session` waited for and lets go of it.
    func cancel(_ session: EngineIOSession) {
        let slot = session.heartbeatSlot
        guard slot != .none else { return }
        session.heartbeatSlot = .none
        switch slot.queue {
        case .pong:
            self.timeouts.clear(slot.sequence)
            // Pongs come back in the order the pings went out: usually the head.
            self.timeouts.dropClearedHeads()
        case .ping:
            self.pings.clear(slot.sequence)
            self.pings.dropClearedHeads()
        case .clientPing:
            self.clientPings.clear(slot.sequence)
            self.clientPings.dropClearedHeads()
        }
    }

    private func armUnlessFiring(at deadline: NIODeadline) {
        if !self.isFiring {
            self.arm(at: deadline)
        }
    }

    private func arm(at deadline: NIODeadline) {
        if let armed = self.timerDeadline, armed <= deadline { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.fire()
        }
    }

    private func fire() {
        self.timer = nil
        self.timerDeadline = nil
        self.isFiring = true
        let now = self.eventLoop.now
        while let entry = self.timeouts.popFirst(dueBy: now) {
            guard let session = entry.session else { continue }
            session.heartbeatSlot = .none
            session.heartbeatDidTimeOut()
        }
        while let entry = self.clientPings.popFirst(dueBy: now) {
            guard let session = entry.session else { continue }
            session.heartbeatSlot = .none
            session.heartbeatDidTimeOut()
        }
        while let entry = self.pings.popFirst(dueBy: now + self.coalescingWindow) {
            guard let session = entry.session else { continue }
            session.heartbeatSlot = .none
            if session.heartbeatDidSendPing() {
                self.scheduleTimeout(for: session)
            }
        }
        self.isFiring = false
        self.pings.dropClearedHeads()
        self.timeouts.dropClearedHeads()
        self.clientPings.dropClearedHeads()
        let next = [self.pings.entries.first?.deadline, self.timeouts.entries.first?.deadline,
                    self.clientPings.entries.first?.deadline].compactMap { $0 }.min()
        if let next {
            self.arm(at: next)
        }
    }

    /// Stops the timer and drops every entry, as the server's sessions are all closed.
    func stop() {
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
        for queue in [self.pings, self.timeouts, self.clientPings] {
            for case let session? in queue.entries.lazy.map(\.session) {
                session.heartbeatSlot = .none
            }
        }
        self.pings.removeAll()
        self.timeouts.removeAll()
        self.clientPings.removeAll()
    }
}
