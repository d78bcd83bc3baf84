import DequeModule
import EngineIO
import Logging
import Metrics
import NIOCore
import SidecastJSON
import SocketIO

/// A message a group owes its backends, queued in order while the group has none.
enum GroupItem {
    /// A socket connected; `line` is its `connect` line, made once for every group (on the
    /// socket's own loop for a socket of another shard). A group in grace queues the item
    /// without it and makes the line when it sends it: the socket's `data` may change meanwhile.
    case connect(BridgeSocket, line: ByteBuffer?)
    /// An `event` line, encoded once for every group.
    case event(BridgeSocket, ByteBuffer)
    case disconnect(BridgeSocket, ByteBuffer)
    /// A line about no socket (a `serverEvent`): any backend serving the namespace takes it.
    case line(namespace: String, ByteBuffer)
}

/// Backends that share the work for their namespaces: each socket is handled by one of them.
///
/// Sockets stick to the backend that saw their `connect`. When that backend goes away the
/// socket moves, on its next message, to another one, which first gets a `connect` with
/// `"resumed":true` (PROTOCOL.md §3). With no backend at all the group is in grace: items wait
/// in a bounded queue until a backend attaches or the grace period ends.
final class BackendGroup {
    let name: String
    private(set) var backends: [Backend] = []
    /// Served namespaces; kept through the grace period so they go on existing.
    private(set) var namespaces: Set<String> = []
    /// Namespaces some backend of the group authorizes.
    private(set) var authorizingNamespaces: Set<String> = []
    /// Authorization requests waiting for an authorizing backend of this group to attach.
    var pendingAuthorizations: [Int] = []
    /// Messages dropped because the group had no backend, or the grace queue was full.
    private(set) var dropped = 0
    var graceTimer: Scheduled<Void>?

    /// Sticky assignment of socket id → backend.
    private var members: [String: Backend] = [:]
    private var queue = Deque<GroupItem>()
    private let queueLimit: Int
    private var nextPick = 0
    private let logger: Logger
    /// One warning per reason and interval: a flood of drops must not become a flood of lines.
    private var warnings: WarningThrottle
    private let backendsGauge: Gauge
    /// Items waiting in the grace queue.
    private let queueGauge: Gauge
    private let overflowDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "backend_grace_overflow")])
    private let expiryDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "backend_grace_expired")])
    private let unservedDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "no_backend")])

    init(name: String, queueLimit: Int, warningInterval: TimeAmount, logger: Logger) {
        self.name = name
        self.queueLimit = queueLimit
        self.warnings = WarningThrottle(interval: warningInterval)
        self.logger = logger
        self.backendsGauge = Gauge(label: "sidecast_backends", dimensions: [("group", name)])
        self.queueGauge = Gauge(label: "sidecast_backend_queue_depth", dimensions: [("group", name)])
    }

    var isInGrace: Bool { backends.isEmpty }

    func attach(_ backend: Backend) {
        graceTimer?.cancel()
        graceTimer = nil
        backends.append(backend)
        backendsGauge.record(backends.count)
        recomputeNamespaces()
        let waiting = queue
        queue.removeAll()
        queueGauge.record(0)
        for item in waiting { route(item) }
    }

    func detach(_ backend: Backend) {
        backends.removeAll { $0 === backend }
        backendsGauge.record(backends.count)
        if !backends.isEmpty { recomputeNamespaces() }
    }

    /// Sends the item to the socket's backend, or queues it while the group is in grace.
    func deliver(_ item: GroupItem) {
        guard backends.isEmpty else {
            route(item)
            return
        }
        guard queue.count < queueLimit else {
            drop(1, because: "grace queue full", counting: overflowDrops)
            return
        }
        if case .connect(let socket, _) = item {
            queue.append(.connect(socket, line: nil))
        } else {
            queue.append(item)
        }
        queueGauge.record(queue.count)
    }

    /// Ends the grace period: everything still queued is lost.
    func expire() {
        if !queue.isEmpty { drop(queue.count, because: "no backend attached within the grace period", counting: expiryDrops) }
        queue.removeAll()
        queueGauge.record(0)
        members.removeAll()
    }

    /// A `data` command replaced the data of the socket `id` of another shard: its messages
    /// waiting here carry the new data, for the `connect` lines they will make.
    func replaceQueuedData(of id: String, with data: JSONValue) {
        for index in queue.indices {
            switch queue[index] {
            case .connect(let socket, let line):
                if let socket = socket.replacingRemoteData(of: id, with: data) { queue[index] = .connect(socket, line: line) }
            case .event(let socket, let line):
                if let socket = socket.replacingRemoteData(of: id, with: data) { queue[index] = .event(socket, line) }
            case .disconnect(let socket, let line):
                if let socket = socket.replacingRemoteData(of: id, with: data) { queue[index] = .disconnect(socket, line) }
            case .line:
                break
            }
        }
    }

    /// An attached backend of the group that authorizes `namespace`, chosen stably by socket id.
    func authorizer(for namespace: String, socketID: String) -> Backend? {
        let candidates = backends.filter { $0.authorizes && $0.namespaces.contains(namespace) }
        guard !candidates.isEmpty else { return nil }
        return candidates[Self.stableIndex(socketID, count: candidates.count)]
    }

    private func route(_ item: GroupItem) {
        switch item {
        case .connect(let socket, let line):
            guard let backend = pick(socket.namespaceName) else { return drop(1, because: "no backend serves the namespace", counting: unservedDrops) }
            members[socket.id] = backend
            if let line {
                backend.send(line: line)
            } else {
                backend.send(socket.connectMessage(resumed: false))
            }
        case .event(let socket, let line):
            guard let backend = backend(for: socket) else { return drop(1, because: "no backend serves the namespace", counting: unservedDrops) }
            backend.send(line: line, from: socket)
        case .disconnect(let socket, let line):
            guard members[socket.id] != nil else { return }
            guard let backend = backend(for: socket) else { return drop(1, because: "no backend serves the namespace", counting: unservedDrops) }
            backend.send(line: line)
            members.removeValue(forKey: socket.id)
        case .line(let namespace, let line):
            guard let backend = pick(namespace) else { return drop(1, because: "no backend serves the namespace", counting: unservedDrops) }
            backend.send(line: line)
        }
    }

    /// The socket's sticky backend, moving the socket (with a resumed `connect`) when it is gone.
    private func backend(for socket: BridgeSocket) -> Backend? {
        if let current = members[socket.id], current.isAttached { return current }
        guard let backend = pick(socket.namespaceName) else { return nil }
        members[socket.id] = backend
        backend.send(socket.connectMessage(resumed: true))
        return backend
    }

    private func pick(_ namespace: String) -> Backend? {
        for _ in backends.indices {
            let candidate = backends[nextPick % backends.count]
            nextPick &+= 1
            if candidate.namespaces.contains(namespace) { return candidate }
        }
        return nil
    }

    private func recomputeNamespaces() {
        namespaces = backends.reduce(into: []) { $0.formUnion($1.namespaces) }
        authorizingNamespaces = backends.filter(\.authorizes).reduce(into: []) { $0.formUnion($1.namespaces) }
    }

    private func drop(_ count: Int, because reason: String, counting counter: Counter) {
        dropped += count
        counter.increment(by: count)
        guard let count = warnings.record(reason, count: count) else { return }
        logger.warning("dropped backend messages", metadata: [
            "group": "\(name)", "count": "\(count)", "reason": "\(reason)", "dropped_total": "\(dropped)",
        ])
    }

    /// FNV-1a over the id: the same socket always lands on the same index for a given count.
    static func stableIndex(_ id: String, count: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return Int(hash % UInt64(count))
    }
}
