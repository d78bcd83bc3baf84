import Logging
import NIOCore
import Redis

/// One Redis stream in the format of `@socket.io/redis-streams-adapter` (its `lib/adapter.ts`):
/// every node appends socket.io-adapter's cluster messages (see ``ClusterMessage`` and its
/// stream fields) to the stream and reads every entry from it, requests, answers and
/// broadcasts alike, so a Redis outage loses nothing still in the stream once the reader
/// resumes from the last id it saw.
///
/// Like Node's, which extends `ClusterAdapterWithHeartbeat`, the nodes count each other by
/// their messages: a node announces itself with `INITIAL_HEARTBEAT` (the others answer with a
/// `HEARTBEAT`), sends a `HEARTBEAT` after `heartbeatInterval` without publishing, and one not
/// heard from for `heartbeatTimeout`, or that sent `ADAPTER_CLOSE`, no longer counts.
///
/// Confined to the Socket.IO server's event loop, which must be the stream client's.
public final class RedisStreamsTransport: ClusterTransport {
    public weak var delegate: ClusterTransportDelegate?
    /// socket.io-adapter's `ClusterAdapter` has no `allRooms` request.
    public var carriesAllRoomsRequests: Bool { false }
    /// Every node reads every entry.
    public var followsRooms: Bool { false }

    /// The uid an emitter writes; it answers nothing and is not a node.
    static let emitterUID = "emitter"

    private let redis: RedisStreamClient
    private let uid: String
    private let heartbeatInterval: TimeAmount
    private let heartbeatTimeout: TimeAmount
    private let logger: Logger
    private var namespaces: [String: ServedNamespace] = [:]
    private var cleanup: Scheduled<Void>?
    /// With recovery on, the store that gives each kept broadcast its entry id as offset.
    private weak var sessionStore: RedisStreamSessionStore?

    /// What this node keeps per namespace it serves.
    private final class ServedNamespace {
        /// The other nodes serving it, by uid, with when each was last heard from.
        var nodes: [String: NIODeadline] = [:]
        var lastPublished = NIODeadline.now()
        var heartbeat: Scheduled<Void>?
    }

    public init(
        redis: RedisStreamClient,
        uid: String,
        heartbeatInterval: TimeAmount = .seconds(5),
        heartbeatTimeout: TimeAmount = .seconds(10),
        logger: Logger
    ) {
        self.redis = redis
        self.uid = uid
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.logger = logger
        redis.onEntry = { [weak self] entry in self?.received(entry) }
    }

    public func serve(namespace: String) {
        guard namespaces[namespace] == nil else { return }
        let state = ServedNamespace()
        namespaces[namespace] = state
        publish(.initialHeartbeat, namespace: namespace, state)
        scheduleHeartbeat(namespace, state)
        if cleanup == nil { scheduleCleanup() }
    }

    /// Tells the other nodes this one leaves every namespace (`ADAPTER_CLOSE`), as Node's
    /// `close()`; the stream client sends it before it shuts down.
    public func close() {
        for (namespace, state) in namespaces {
            publish(.adapterClose, namespace: namespace, state)
            state.heartbeat?.cancel()
        }
        namespaces = [:]
        cleanup?.cancel()
        cleanup = nil
    }

    /// Recovery with `store`: every broadcast this node delivers gets its entry id as offset,
    /// and this node applies its own broadcasts, joins, leaves and disconnects when it reads
    /// them back, so its sockets see the stream's order and nothing else (what a restore
    /// relies on). Call before the first `serve`.
    public func keepOffsets(in store: RedisStreamSessionStore) {
        sessionStore = store
    }

    public var appliesOwnRequestsOnReadBack: Bool { sessionStore != nil }

    public func roomCreated(_ room: String, isPrivate: Bool, namespace: String) {}

    public func roomDeleted(_ room: String, namespace: String) {}

    /// Node's `serverCount()`: this node and every other heard from within the heartbeat
    /// timeout. Fails while Redis is unreachable, as the pub/sub transports do.
    public func serverCount(namespace: String, completion: @escaping (Result<Int, AdapterError>) -> Void) {
        guard let state = namespaces[namespace] else { return completion(.success(1)) }
        guard redis.isConnected else { return completion(.failure(.unavailable("Redis is unreachable"))) }
        let oldest = NIODeadline.now() - heartbeatTimeout
        completion(.success(1 + state.nodes.values.filter { $0 >= oldest }.count))
    }

    // MARK: Writing

    public func publish(_ request: ClusterRequest, namespace: String) {
        guard let state = namespaces[namespace] else { return }
        guard let body = ClusterMessage.Body(request) else {
            return logger.debug("the streams format has no allRooms request", metadata: ["namespace": "\(namespace)"])
        }
        publish(body, namespace: namespace, state)
    }

    /// Node's `doPublishResponse` appends answers to the stream like anything else; the
    /// requester picks its own by request id.
    public func publishResponse(_ response: ClusterResponse, to requester: String?, namespace: String) {
        guard let state = namespaces[namespace], requester != nil, let body = ClusterMessage.Body(response) else { return }
        publish(body, namespace: namespace, state)
    }

    private func publish(_ body: ClusterMessage.Body, namespace: String, _ state: ServedNamespace) {
        redis.append(ClusterMessage(uid: uid, namespace: namespace, body: body).streamFields)
        state.lastPublished = .now()
    }

    /// Node's heartbeat timer, which every publish pushes back: a `HEARTBEAT` goes out once a
    /// namespace has published nothing for the interval. Checked when the timer fires rather
    /// than rescheduled per publish, which would cost a timer per broadcast.
    private func scheduleHeartbeat(_ namespace: String, _ state: ServedNamespace) {
        state.heartbeat = redis.eventLoop.assumeIsolated().scheduleTask(deadline: state.lastPublished + heartbeatInterval) { [weak self, weak state] in
            guard let self, let state, self.namespaces[namespace] === state else { return }
            if state.lastPublished + self.heartbeatInterval <= .now() {
                self.publish(.heartbeat, namespace: namespace, state)
            }
            self.scheduleHeartbeat(namespace, state)
        }
    }

    /// Node's cleanup timer: once a second, the nodes gone quiet are forgotten.
    private func scheduleCleanup() {
        cleanup = redis.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [weak self] in
            guard let self, self.cleanup != nil else { return }
            let oldest = NIODeadline.now() - self.heartbeatTimeout
            for state in self.namespaces.values {
                state.nodes = state.nodes.filter { $0.value >= oldest }
            }
            self.scheduleCleanup()
        }
    }

    // MARK: Reading

    /// Node's `onRawMessage` then `onMessage`: entries of namespaces this node does not serve,
    /// and its own, are skipped before their data is decoded.
    private func received(_ entry: RedisStreamEntry) {
        guard let namespaceField = entry.fields["nsp"], let uidField = entry.fields["uid"] else { return }
        let namespace = String(buffer: namespaceField)
        guard let state = namespaces[namespace] else { return }
        let sender = String(buffer: uidField)
        let isOwn = sender == uid
        guard !isOwn || sessionStore != nil else { return }
        let message: ClusterMessage
        do {
            message = try ClusterMessage(streamFields: entry.fields)
        } catch {
            return logger.warning("skipping a malformed entry of the Redis stream", metadata: ["redis.entry": "\(entry.id)", "error": "\(error)"])
        }
        if isOwn { return readBack(message.body, entryID: entry.id, namespace: namespace) }
        if sender != Self.emitterUID {
            state.nodes[sender] = .now()
        }
        let request: ClusterRequest
        switch message.body.inbound {
        case .initialHeartbeat:
            return publish(.heartbeat, namespace: namespace, state)
        case .heartbeat:
            return
        case .adapterClose:
            state.nodes[sender] = nil
            return
        case .response(let response):
            return delegate?.transport(didReceive: response) ?? ()
        case .request(let received):
            request = received
        }
        delivering(entry.id) {
            delegate?.transport(didReceive: request, from: sender == Self.emitterUID ? nil : sender, namespace: namespace)
        }
    }

    /// This node's own entry, applied now with recovery on (``keepOffsets(in:)``).
    private func readBack(_ body: ClusterMessage.Body, entryID: String, namespace: String) {
        // Only the kinds ``keepOffsets(in:)`` leaves to the read back; the others were applied when sent.
        guard case .request(let request) = body.inbound else { return }
        switch request {
        case .broadcast(_, _, nil), .socketsJoin, .socketsLeave, .disconnectSockets:
            break
        default:
            return
        }
        delivering(entryID) { delegate?.transport(didReadBack: request, namespace: namespace) }
    }

    /// Runs `deliver` with the store knowing the entry it delivers, the offset of its packet.
    private func delivering(_ entryID: String, _ deliver: () -> Void) {
        sessionStore?.deliveringEntryID = entryID
        deliver()
        sessionStore?.deliveringEntryID = nil
    }
}
