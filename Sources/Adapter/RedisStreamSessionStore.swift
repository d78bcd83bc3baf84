import EngineIO
import ExtrasBase64
import Logging
import Metrics
import NIOCore
import OrderedCollections
import Redis
import SidecastJSON
import SocketIO

/// The session store of a `--redis-streams` node, as `@socket.io/redis-streams-adapter` keeps
/// sessions (`persistSession` and `restoreSession` in its `lib/adapter.ts`): the stream is the
/// packet history, so any node of the cluster, Node's included, restores a session another
/// persisted.
///
/// - A kept broadcast's offset is its stream entry id, the same on every node.
/// - A dropped socket's session goes to `<prefix><pid>` (`SET … PX <window>`) as Node writes it:
///   the msgpack of `{sid, pid, rooms, data}` in base64.
/// - A restore takes the session (`GETDEL`), checks that the client's offset is still in the
///   stream, and replays the broadcast entries after it that were for the socket, each with
///   its entry id appended (as the adapter does since its fix for socket.io#5419).
///
/// What makes a restore lose and repeat nothing: this node delivers every broadcast of the
/// stream (its own too, see ``RedisStreamsTransport/keepOffsets(in:)``) in stream order, but
/// for the copies retries appended, so at any moment it has delivered exactly the entries up
/// to its reader's position less those copies. The missed packets are the entries after the
/// client's offset up to that position, less the copies; those after it reach the restored
/// socket live. A client whose offset this node has not read yet (it was
/// sent by a node that read further) waits for the reader to get there.
///
/// Confined to the stream client's event loop, the adapter's home loop.
public final class RedisStreamSessionStore: SessionStore {
    /// `sessionKeyPrefix`'s default in the Node adapter.
    public static let defaultKeyPrefix = "sio:session:"

    private let redis: RedisStreamClient
    private let window: TimeAmount
    private let keyPrefix: String
    /// How long a restore may take to gather the missed entries, waiting for the reader to
    /// reach a client's offset included.
    private let catchUpTimeout: TimeAmount
    private let logger: Logger
    private let metrics = StreamRecoveryMetrics()
    private var persistWarnings = WarningThrottle(interval: .seconds(10))
    /// The entry the transport is delivering now: the offset of the packet `keep` is handed.
    /// A broadcast kept with no entry (`local`, never in the stream) gets no offset, as in Node.
    var deliveringEntryID: String?

    public init(
        redis: RedisStreamClient,
        window: TimeAmount,
        keyPrefix: String = RedisStreamSessionStore.defaultKeyPrefix,
        catchUpTimeout: TimeAmount = .seconds(2),
        logger: Logger
    ) {
        self.redis = redis
        self.window = window
        self.keyPrefix = keyPrefix
        self.catchUpTimeout = catchUpTimeout
        self.logger = logger
    }

    public func keep(_ packet: SocketIOPacket, options: BroadcastOptions) -> SocketIOPacket {
        guard let id = deliveringEntryID, RecoveryConfiguration.keeps(packet, options: options) else { return packet }
        return RecoveryConfiguration.appendingOffset(id, to: packet)
    }

    public func persist(_ session: PersistedSession) {
        let milliseconds = max(1, window.nanoseconds / 1_000_000)
        let command = ["SET", key(session.pid), Self.encode(session), "PX", String(milliseconds)].map { ByteBuffer(string: $0) }
        redis.send(command).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(.error(let message)):
                lostSession(because: message)
            case .failure(let error):
                lostSession(because: "\(error)")
            case .success:
                break
            }
        }
    }

    /// A session Redis did not take: its client will connect fresh. Every socket of a node
    /// may drop at once while Redis is away, hence one warning per interval.
    private func lostSession(because reason: String) {
        metrics.lostSessions.increment()
        guard let count = persistWarnings.record("persist") else { return }
        logger.warning("cannot keep sessions in Redis; their clients will connect fresh", metadata: [
            "error": "\(reason)", "sessions": "\(count)",
        ])
    }

    public func lookUp(pid: String, offset: String, namespace: String, completion: @escaping (String?) -> Void) {
        guard StreamEntryID(offset) != nil else {
            metrics.offsetNotKept.increment()
            return completion(nil)
        }
        let session = redis.send(["GET", key(pid)].map { ByteBuffer(string: $0) })
        let offsetEntry = redis.send(["XRANGE", redis.stream.name, offset, offset].map { ByteBuffer(string: $0) })
        session.and(offsetEntry).assumeIsolated().whenComplete { [self] result in
            switch check(result, pid: pid, namespace: namespace) {
            case .success(let found): completion(found.sid)
            case .failure(let failure):
                metrics.failed(failure)
                completion(nil)
            }
        }
    }

    public func restore(pid: String, offset: String, namespace: String, completion: @escaping (RestoredSession?) -> Void) {
        guard let start = StreamEntryID(offset) else {
            metrics.offsetNotKept.increment()
            return completion(nil)
        }
        // Pipelined on one connection: Redis runs them in this order.
        let session = redis.send(["GETDEL", key(pid)].map { ByteBuffer(string: $0) })
        let offsetEntry = redis.send(["XRANGE", redis.stream.name, offset, offset].map { ByteBuffer(string: $0) })
        let after = redis.send(["XRANGE", redis.stream.name, "(" + offset, "+"].map { ByteBuffer(string: $0) })
        session.and(offsetEntry).and(after).assumeIsolated().whenComplete { [self] result in
            let found = check(result.map { $0.0 }, pid: pid, namespace: namespace)
            guard case .success(let session) = found else {
                if case .failure(let failure) = found { metrics.failed(failure) }
                return completion(nil)
            }
            guard case .success(((_, let offsetReply), let afterReply)) = result,
                  let entries = try? RedisStreamEntry.entries(ofRange: afterReply)
            else {
                metrics.failed(.unreachable)
                return completion(nil)
            }
            var gathering = Gathering(session: session, start: start, deadline: .now() + catchUpTimeout, completion: completion)
            gathering.offsetEntry = try? RedisStreamEntry.entries(ofRange: offsetReply).first
            gathering.add(entries)
            gather(gathering)
        }
    }

    /// A restore collecting the entries the session missed.
    private struct Gathering {
        var session: PersistedSession
        var start: StreamEntryID
        /// The entry at `start`, which the client had.
        var offsetEntry: RedisStreamEntry?
        /// Entries after `start`, in stream order, up to `covered`.
        var entries: [RedisStreamEntry] = []
        /// Every entry of the stream up to here is in `entries` (or before `start`).
        var covered: StreamEntryID
        var deadline: NIODeadline
        var completion: (RestoredSession?) -> Void

        init(session: PersistedSession, start: StreamEntryID, deadline: NIODeadline, completion: @escaping (RestoredSession?) -> Void) {
            self.session = session
            self.start = start
            self.covered = start
            self.deadline = deadline
            self.completion = completion
        }

        mutating func add(_ more: [RedisStreamEntry]) {
            for entry in more {
                guard let id = StreamEntryID(entry.id), id > covered else { continue }
                entries.append(entry)
                covered = id
            }
        }
    }

    /// Finishes `gathering` once the range it holds reaches the reader's position: waits for a
    /// reader behind the client's offset, reads what the reader got past meanwhile.
    private func gather(_ gathering: Gathering) {
        var gathering = gathering
        guard let readerText = redis.lastID, let reader = StreamEntryID(readerText), reader >= gathering.start else {
            guard NIODeadline.now() < gathering.deadline else {
                logger.info("recovery gave up waiting for the stream reader to reach the client's offset")
                metrics.failed(.offsetNotKept)
                return gathering.completion(nil)
            }
            redis.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(10)) { [self] in gather(gathering) }
            return
        }
        guard reader <= gathering.covered else {
            // Each read catches up with the reader unless the stream grows faster than Redis
            // answers; the deadline bounds that, as the Node adapter bounds its XRANGE calls.
            guard NIODeadline.now() < gathering.deadline else {
                logger.info("recovery gave up catching up with a stream that grows faster than it is read")
                metrics.failed(.offsetNotKept)
                return gathering.completion(nil)
            }
            let command = ["XRANGE", redis.stream.name, "(" + gathering.covered.description, "+"].map { ByteBuffer(string: $0) }
            redis.send(command).assumeIsolated().whenComplete { [self] result in
                guard case .success(let reply) = result, let entries = try? RedisStreamEntry.entries(ofRange: reply) else {
                    metrics.failed(.unreachable)
                    return gathering.completion(nil)
                }
                let before = gathering.covered
                gathering.add(entries)
                // Trimmed away under the reader: nothing more to find up to its position.
                if gathering.covered == before { gathering.covered = max(before, reader) }
                gather(gathering)
            }
            return
        }
        var missed: [SocketIOPacket] = []
        // No copy a retry appended, as live (``RedisStreamDuplicateFilter``): none the reader
        // dropped, and, for entries this node's reader may not have read (the client's offset
        // can precede this node's start), none of the entry at the offset or of one replayed.
        var copies = redis.stream.writerField.map { RedisStreamDuplicateFilter(writerField: $0) }
        if let offsetEntry = gathering.offsetEntry { _ = copies?.judge(offsetEntry.fields) }
        for entry in gathering.entries {
            guard let id = StreamEntryID(entry.id), id <= reader else { break }
            if case .duplicate = copies?.judge(entry.fields) { continue }
            if redis.droppedAsDuplicate(entry.id) { continue }
            if let packet = missedPacket(entry, for: gathering.session) { missed.append(packet) }
        }
        metrics.recovered.increment()
        metrics.replayed.increment(by: missed.count)
        gathering.completion(RestoredSession(session: gathering.session, missedPackets: missed))
    }

    /// The packet of a broadcast entry the session would have received, with its offset: an
    /// entry of the session's namespace that the store keeps and that was for one of its rooms
    /// (`shouldIncludePacket` in the Node adapter).
    private func missedPacket(_ entry: RedisStreamEntry, for session: PersistedSession) -> SocketIOPacket? {
        guard let namespace = entry.fields["nsp"], String(buffer: namespace) == session.namespace,
              let type = entry.fields["type"], String(buffer: type) == String(ClusterMessageType.broadcast.rawValue),
              let message = try? ClusterMessage(streamFields: entry.fields),
              case .broadcast(let packet, let clusterOptions, nil) = message.body
        else { return nil }
        let options = clusterOptions.local(session.namespace)
        guard RecoveryConfiguration.keeps(packet, options: options), session.wants(options) else { return nil }
        return RecoveryConfiguration.appendingOffset(entry.id, to: packet)
    }

    /// Why a look-up or restore failed, as `/metrics` counts it.
    fileprivate enum Failure: Error {
        case unknownSession
        case offsetNotKept
        case unreachable
    }

    /// The session in the reply to `GET`/`GETDEL`, when the reply to `XRANGE offset offset`
    /// shows the offset still in the stream.
    private func check(
        _ result: Result<(RedisReply, RedisReply), Error>, pid: String, namespace: String
    ) -> Result<PersistedSession, Failure> {
        guard case .success(let (sessionReply, offsetReply)) = result else { return .failure(.unreachable) }
        guard case .bulk(let encoded) = sessionReply else {
            if case .error(let message) = sessionReply {
                logger.warning("cannot read a session from Redis", metadata: ["error": "\(message)"])
            }
            return .failure(.unknownSession)
        }
        guard let session = Self.decode(encoded, namespace: namespace) else {
            logger.warning("skipping a session in Redis that is not one", metadata: ["pid": "\(pid)"])
            return .failure(.unknownSession)
        }
        guard let offsetEntries = try? RedisStreamEntry.entries(ofRange: offsetReply), !offsetEntries.isEmpty else {
            return .failure(.offsetNotKept)
        }
        return .success(session)
    }

    private func key(_ pid: String) -> String {
        keyPrefix + pid
    }

    /// Node's `SessionToPersist` as the adapter writes it: msgpack in base64. The namespace is
    /// not in it (each Node adapter is one namespace's); a restore takes the one it is for.
    static func encode(_ session: PersistedSession) -> String {
        let value = JSONValue.object([
            "sid": .string(session.sid),
            "pid": .string(session.pid),
            "rooms": .array(session.rooms.map { .string($0) }),
            "data": session.data,
        ])
        return Base64.encodeToString(bytes: MessagePack.encode(value).readableBytesView)
    }

    static func decode(_ encoded: ByteBuffer, namespace: String) -> PersistedSession? {
        guard let packed = try? Base64.decode(bytes: encoded.readableBytesView),
              let value = try? MessagePack.decode(ByteBuffer(bytes: packed)),
              let sid = value["sid"]?.stringValue, let pid = value["pid"]?.stringValue,
              let rooms = value["rooms"]?.arrayValue
        else { return nil }
        let roomNames = rooms.compactMap(\.stringValue)
        guard roomNames.count == rooms.count else { return nil }
        return PersistedSession(pid: pid, sid: sid, namespace: namespace, rooms: roomNames, data: value["data"] ?? .null)
    }
}

/// A stream entry id, `<milliseconds>-<sequence>`, ordered as Redis orders them.
struct StreamEntryID: Comparable, CustomStringConvertible {
    var milliseconds: UInt64
    var sequence: UInt64

    /// Nil unless `text` is two decimal numbers joined by `-` (what the Node adapter accepts).
    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let milliseconds = UInt64(parts[0]), let sequence = UInt64(parts[1])
        else { return nil }
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }

    var description: String { "\(milliseconds)-\(sequence)" }
}

/// What `/metrics` shows of recovery on a streams node: the labels of the memory store's, the
/// kept packets and sessions being Redis's to count.
private struct StreamRecoveryMetrics {
    let recovered = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "recovered")])
    let replayed = Counter(label: "sidecast_recovery_replayed_packets_total")
    let unknownSession = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "unknown_session")])
    let offsetNotKept = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "offset_not_kept")])
    let unreachable = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "redis_unreachable")])
    let lostSessions = Counter(label: "sidecast_recovery_lost_sessions_total")

    fileprivate func failed(_ failure: RedisStreamSessionStore.Failure) {
        switch failure {
        case .unknownSession: unknownSession.increment()
        case .offsetNotKept: offsetNotKept.increment()
        case .unreachable: unreachable.increment()
        }
    }
}
