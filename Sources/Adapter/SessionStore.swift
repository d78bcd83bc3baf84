import EngineIO
import Metrics
import NIOCore
import SidecastJSON
import SocketIO

/// Where a node keeps dropped sockets' sessions and the packets their clients may have missed,
/// for connection state recovery: the adapter-side half of Node's `SessionAwareAdapter`
/// (`persistSession`, `restoreSession`).
///
/// Lives on the adapter's (home) loop; every call and completion happens there. Offsets are
/// opaque strings the store hands out: the memory store numbers the packets it keeps; a store
/// on a Redis stream (``RedisStreamSessionStore``) uses the entry ids of the broadcasts, which
/// its node delivers in stream order, and restores with `XRANGE` after the client's offset.
///
/// A store answers `restore` in the same loop turn as it decides which packets were missed,
/// and the shards hear that answer before any packet kept after it: that is what makes a
/// recovery lose and repeat nothing.
public protocol SessionStore: AnyObject {
    /// A broadcast about to reach this node's sockets; returns the packet to deliver, with its
    /// offset appended when the store keeps it (`RecoveryConfiguration.keeps`).
    func keep(_ packet: SocketIOPacket, options: BroadcastOptions) -> SocketIOPacket
    /// Keeps a dropped socket's session for the recovery window.
    func persist(_ session: PersistedSession)
    /// The sid of session `pid` if it could be restored from `offset` now; leaves it in place.
    func lookUp(pid: String, offset: String, namespace: String, completion: @escaping (String?) -> Void)
    /// Takes session `pid` and the packets for it kept after `offset`, in order; nil when the
    /// session is unknown, expired or of another namespace, or the offset is no longer kept.
    func restore(pid: String, offset: String, namespace: String, completion: @escaping (RestoredSession?) -> Void)
}

/// The session store of a standalone node and of a classic Redis node: sessions and packets in
/// memory, as Node's `SessionAwareAdapter`, for the whole node (every namespace, every shard).
///
/// Packets are kept for the recovery window and at most `maxPackets` of them; sessions for the
/// window. Unlike Node's, a restored session is taken out (as the Redis streams adapter's
/// `GETDEL` does), so one session cannot come back twice.
public final class MemorySessionStore: SessionStore {
    private let window: TimeAmount
    private let maxPackets: Int
    /// Starts every offset of this process: an offset of another process (a restarted node,
    /// another node behind the same address) is never mistaken for one of ours.
    private let offsetPrefix: String
    private var nextSequence: UInt64 = 0
    /// Kept packets, oldest first, numbered without gaps: the packet of sequence `s` is at
    /// `s - first.sequence`.
    private var packets = CircularBuffer<KeptPacket>()
    private var sessions: [String: StoredSession] = [:]
    private let eventLoop: EventLoop
    private var sweeper: Scheduled<Void>?
    private let metrics = RecoveryMetrics()

    private struct KeptPacket {
        var sequence: UInt64
        var packet: SocketIOPacket
        var options: BroadcastOptions
        var keptAt: NIODeadline
    }

    private struct StoredSession {
        var session: PersistedSession
        var disconnectedAt: NIODeadline
    }

    /// Why a recovery failed, as `/metrics` counts it.
    fileprivate enum Failure: Error {
        case unknownSession
        case expired
        case offsetNotKept
    }

    /// A store for `window`; sweeps expired sessions and packets every second on `eventLoop`,
    /// its loop, so memory goes back even when nothing else happens.
    public init(window: TimeAmount, maxPackets: Int, eventLoop: EventLoop) {
        precondition(maxPackets > 0, "a store keeps at least one packet")
        self.window = window
        self.maxPackets = maxPackets
        self.offsetPrefix = String(RandomID.make(length: 6).prefix(6))
        self.eventLoop = eventLoop
        scheduleSweep()
    }

    private func scheduleSweep() {
        sweeper = eventLoop.assumeIsolated().scheduleTask(in: min(window, .seconds(1))) { [weak self] in
            guard let self else { return }
            self.sweep(now: .now())
            self.scheduleSweep()
        }
    }

    deinit {
        sweeper?.cancel()
    }

    /// Packets kept now.
    public var packetCount: Int { packets.count }
    /// Sessions kept now.
    public var sessionCount: Int { sessions.count }

    public func keep(_ packet: SocketIOPacket, options: BroadcastOptions) -> SocketIOPacket {
        guard RecoveryConfiguration.keeps(packet, options: options) else { return packet }
        let now = NIODeadline.now()
        dropPackets(before: now - window)
        if packets.count >= maxPackets {
            packets.removeFirst()
            metrics.evictedBySize.increment()
        }
        let sequence = nextSequence
        nextSequence += 1
        let kept = RecoveryConfiguration.appendingOffset(offset(of: sequence), to: packet)
        packets.append(KeptPacket(sequence: sequence, packet: kept, options: options, keptAt: now))
        metrics.packets.record(packets.count)
        return kept
    }

    public func persist(_ session: PersistedSession) {
        sessions[session.pid] = StoredSession(session: session, disconnectedAt: .now())
        metrics.sessions.record(sessions.count)
    }

    public func lookUp(pid: String, offset: String, namespace: String, completion: @escaping (String?) -> Void) {
        switch find(pid: pid, offset: offset, namespace: namespace, now: .now()) {
        case .success(let found):
            completion(found.stored.session.sid)
        case .failure(let failure):
            // Counted here: a failed look-up is never followed by a restore.
            metrics.failed(failure)
            completion(nil)
        }
    }

    public func restore(pid: String, offset: String, namespace: String, completion: @escaping (RestoredSession?) -> Void) {
        switch find(pid: pid, offset: offset, namespace: namespace, now: .now()) {
        case .failure(let failure):
            metrics.failed(failure)
            completion(nil)
        case .success(let found):
            sessions.removeValue(forKey: pid)
            metrics.sessions.record(sessions.count)
            let session = found.stored.session
            var missed: [SocketIOPacket] = []
            for kept in packets[found.after...] where session.wants(kept.options) {
                missed.append(kept.packet)
            }
            metrics.recovered.increment()
            metrics.replayed.increment(by: missed.count)
            completion(RestoredSession(session: session, missedPackets: missed))
        }
    }

    /// The session `pid` and the index of the first packet after `offset`.
    private func find(
        pid: String, offset: String, namespace: String, now: NIODeadline
    ) -> Result<(stored: StoredSession, after: CircularBuffer<KeptPacket>.Index), Failure> {
        guard let stored = sessions[pid], stored.session.namespace == namespace else {
            return .failure(Failure.unknownSession)
        }
        guard stored.disconnectedAt + window >= now else {
            sessions.removeValue(forKey: pid)
            metrics.expired.increment()
            metrics.sessions.record(sessions.count)
            return .failure(Failure.expired)
        }
        dropPackets(before: now - window)
        guard let sequence = sequence(of: offset), let first = packets.first, sequence >= first.sequence,
              sequence - first.sequence < UInt64(packets.count)
        else {
            return .failure(Failure.offsetNotKept)
        }
        let index = packets.index(packets.startIndex, offsetBy: Int(sequence - first.sequence) + 1)
        return .success((stored, index))
    }

    /// Drops what the window no longer covers.
    func sweep(now: NIODeadline) {
        dropPackets(before: now - window)
        let threshold = now - window
        let before = sessions.count
        sessions = sessions.filter { $0.value.disconnectedAt >= threshold }
        if sessions.count != before {
            metrics.expired.increment(by: before - sessions.count)
            metrics.sessions.record(sessions.count)
        }
    }

    private func dropPackets(before threshold: NIODeadline) {
        var dropped = 0
        while let first = packets.first, first.keptAt < threshold {
            packets.removeFirst()
            dropped += 1
        }
        guard dropped > 0 else { return }
        metrics.evictedByWindow.increment(by: dropped)
        metrics.packets.record(packets.count)
    }

    private func offset(of sequence: UInt64) -> String {
        offsetPrefix + String(sequence, radix: 36)
    }

    private func sequence(of offset: String) -> UInt64? {
        guard offset.hasPrefix(offsetPrefix) else { return nil }
        return UInt64(offset.dropFirst(offsetPrefix.count), radix: 36)
    }
}

/// What `/metrics` shows of recovery: what is kept, what fell out, what came back.
private struct RecoveryMetrics {
    let packets = Gauge(label: "sidecast_recovery_packets")
    let sessions = Gauge(label: "sidecast_recovery_sessions")
    let evictedByWindow = Counter(label: "sidecast_recovery_evicted_packets_total", dimensions: [("cause", "window")])
    let evictedBySize = Counter(label: "sidecast_recovery_evicted_packets_total", dimensions: [("cause", "size")])
    let expired = Counter(label: "sidecast_recovery_expired_sessions_total")
    let recovered = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "recovered")])
    let replayed = Counter(label: "sidecast_recovery_replayed_packets_total")

    let unknownSession = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "unknown_session")])
    let expiredSession = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "expired")])
    let offsetNotKept = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "offset_not_kept")])

    fileprivate func failed(_ failure: MemorySessionStore.Failure) {
        switch failure {
        case .unknownSession: unknownSession.increment()
        case .expired: expiredSession.increment()
        case .offsetNotKept: offsetNotKept.increment()
        }
    }
}
