import Adapter
import EngineIO
import Logging
import Metrics
import NIOCore
import SidecastJSON
import SocketIO

/// Connects the Socket.IO server to backend processes speaking NDJSON (proto/PROTOCOL.md).
///
/// Client activity flows to backends as `connect`/`event`/`disconnect` lines, one copy per
/// group; backend commands flow to clients through the adapter, so they reach every node of a
/// cluster. Confined to the home shard's event loop; a backend's connection may be on any loop,
/// which parses its lines and hands them here (``BackendChannelHandler``).
///
/// On a node of several loops, the clients of the other shards reach the bridge through their
/// shard's ``ShardSink`` (a socket's connect, events and disconnect arrive in the order its
/// client sent them), and a backend's commands about one socket are handed to that socket's
/// shard, read from its id, in the order the backend sent them.
public final class Bridge {
    public let configuration: BridgeConfiguration
    let logger: Logger
    private let shards: NodeShards
    private let adapter: Adapter
    private let eventLoop: EventLoop
    /// The rooms the recovered sockets of other shards got back, by id, from their connect to
    /// their disconnect: their later messages carry them (``RemoteSocket``).
    private var recoveredRemoteRooms: [String: [String]] = [:]
    /// `data` commands about sockets of other shards that their shard has not carried out yet,
    /// by socket id: what the shard says of such a socket's data until then is older.
    private var dataUpdates: [String: DataUpdate] = [:]
    /// The sinks of the other shards, told which namespaces exist.
    private var shardSinks: [NIOLoopBound<ShardSink>] = []

    private var groups: [String: BackendGroup] = [:]
    private var nextBackendID = 0
    private var nextReq = 1
    private var authorizations: [Int: PendingAuthorization] = [:]
    /// Other nodes' server-side emits waiting for a backend's `serverAck`, by ack number.
    private var serverAcks: [Int: (reply: (JSONValue) -> Void, timer: Scheduled<Void>)] = [:]
    private var nextServerAck = 0
    private var isShuttingDown = false
    /// Namespaces that require authorization: the `--authorize` ones, and every namespace a
    /// backend ever said `authorize:true` for. Never shrinks, so an authorizer's outage closes
    /// the namespace rather than opening it (PROTOCOL.md §6).
    private var authorizedNamespaces: Set<String>
    /// Rate-limits the warnings about clients refused or events dropped, per namespace.
    private var warnings: WarningThrottle
    private let emits = Counter(label: "sidecast_backend_emits_total")
    private let unservedDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "no_backend")])
    private let authorizationsUnavailable = Counter(label: "sidecast_authorizations_unavailable_total")

    /// The newest data `data` commands set for a socket of another shard, and how many of
    /// them its shard has yet to carry out.
    private struct DataUpdate {
        var data: JSONValue
        var pending: Int
    }

    /// A connection waiting for an authorizing backend's `accept` or `reject`.
    private struct PendingAuthorization {
        var request: ConnectRequest
        var decide: (ConnectDecision) -> Void
        var timer: Scheduled<Void>
        /// The backend asked; `nil` while queued in a group in grace.
        var backend: Backend?
    }

    /// The bridge of a node on one event loop. Call on the server's loop.
    public convenience init(configuration: BridgeConfiguration, server: SocketIOServer, adapter: Adapter, logger: Logger) {
        self.init(configuration: configuration, shards: NodeShards(server: server), adapter: adapter, logger: logger)
    }

    /// The bridge of a node whose shards are `shards`; the other shards' servers take the
    /// sinks `makeShardSink` gives. Call on the home loop.
    public init(configuration: BridgeConfiguration, shards: NodeShards, adapter: Adapter, logger: Logger) {
        self.configuration = configuration
        self.shards = shards
        self.adapter = adapter
        self.eventLoop = shards.eventLoop
        let server = shards.home
        self.logger = logger
        self.authorizedNamespaces = configuration.authorizedNamespaces
        self.warnings = WarningThrottle(interval: configuration.warningInterval)
        server.sink = self
        adapter.delegate = self
        for namespace in configuration.namespaces.union(configuration.authorizedNamespaces) {
            adapter.serve(namespace: namespace)
        }
    }

    /// Sets up accepted backend connections, on any of the node's loops. Call on the bridge's
    /// loop; the value may be used on any.
    public var backendChannels: BackendChannels {
        BackendChannels(
            bridge: NIOLoopBound(self, eventLoop: eventLoop),
            helloTimeout: configuration.helloTimeout,
            maxLineLength: configuration.maxLineLength,
            logger: logger
        )
    }

    /// Number of attached backends, over all groups.
    public var backendCount: Int { groups.values.reduce(0) { $0 + $1.backends.count } }

    /// Whether a backend that serves `namespace` is attached now (a group in grace has none).
    public func hasBackend(serving namespace: String) -> Bool {
        groups.values.contains { !$0.isInGrace && $0.namespaces.contains(namespace) }
    }

    /// Tells every backend that sidecast stops, then closes their connections.
    public func shutdown() {
        isShuttingDown = true
        for (req, pending) in authorizations {
            pending.timer.cancel()
            authorizations.removeValue(forKey: req)
            pending.decide(.reject(message: "server shutting down", data: nil))
        }
        for group in groups.values {
            group.graceTimer?.cancel()
            for backend in group.backends { backend.sendAndClose(BackendMessage.shutdown) }
        }
    }

    // MARK: Backends attaching and leaving

    /// Carries out what one read from a backend's connection said: its hello attaches it, its
    /// commands run in the order sent with their replies flushed together, and `closed`
    /// detaches it. `slot` holds the connection's backend from its hello on.
    func receive(_ lines: [BackendLine], closed: Bool, backend slot: NIOLoopBoundBox<Backend?>, channel: Channel) {
        var reading: Backend?
        /// The attached backend, its read batch begun at its first command.
        func attached() -> Backend? {
            guard let backend = slot.value else { return nil }
            if reading == nil {
                backend.beginReadBatch()
                reading = backend
            }
            return backend
        }
        for line in lines {
            switch line {
            case .hello(let hello):
                slot.value = attach(hello, channel: channel)
            case .request(let request):
                if let backend = attached() { handle(request, from: backend) }
            case .failed(let error):
                if let backend = attached() { report(error.error, id: error.id, line: error.line, to: backend) }
            case .tooLong(let bytes):
                attached()?.send(BackendMessage.error(.tooLarge(bytes, limit: configuration.maxLineLength), line: ""))
            }
        }
        reading?.endReadBatch()
        if closed, let backend = slot.value {
            slot.value = nil
            detach(backend)
        }
    }

    func attach(_ hello: BackendCommand.Hello, channel: Channel) -> Backend {
        nextBackendID += 1
        let backend = Backend(id: nextBackendID, hello: hello, channel: channel, eventLoop: eventLoop)
        backend.send(BackendMessage.welcome(node: configuration.nodeID))
        let group: BackendGroup
        if let existing = groups[hello.group] {
            group = existing
        } else {
            group = BackendGroup(
                name: hello.group, queueLimit: configuration.graceQueueLimit,
                warningInterval: configuration.warningInterval, logger: logger
            )
            groups[hello.group] = group
        }
        for namespace in hello.namespaces { adapter.serve(namespace: namespace) }
        logger.info("backend attached", metadata: [
            "backend": "\(backend.id)", "group": "\(hello.group)",
            "nsps": "\(hello.namespaces.joined(separator: ","))", "authorize": "\(hello.authorize)",
        ])
        if hello.authorize {
            for namespace in hello.namespaces where authorizedNamespaces.insert(namespace).inserted {
                logger.info("namespace requires authorization from now on", metadata: ["nsp": "\(namespace)"])
            }
        }
        group.attach(backend)
        shareServedNamespaces()
        let waiting = group.pendingAuthorizations
        group.pendingAuthorizations.removeAll()
        for req in waiting { dispatchAuthorization(req) }
        return backend
    }

    func detach(_ backend: Backend) {
        backend.detached()
        backend.resumePausedSockets()
        guard let group = groups[backend.group] else { return }
        group.detach(backend)
        shareServedNamespaces()
        logger.info("backend detached", metadata: ["backend": "\(backend.id)", "group": "\(group.name)"])
        if group.isInGrace && !isShuttingDown {
            logger.warning("group has no backend; queueing its messages", metadata: [
                "group": "\(group.name)", "grace": "\(configuration.backendGrace.nanoseconds / 1_000_000) ms",
            ])
            group.graceTimer = eventLoop.assumeIsolated().scheduleTask(in: configuration.backendGrace) { [weak self, weak group] in
                guard let self, let group, group.isInGrace else { return }
                group.expire()
                self.groups.removeValue(forKey: group.name)
                self.shareServedNamespaces()
                let orphaned = group.pendingAuthorizations
                group.pendingAuthorizations.removeAll()
                for req in orphaned { self.dispatchAuthorization(req) }
                self.logger.warning("group forgotten after its grace period", metadata: ["group": "\(group.name)"])
            }
        }
        for req in backend.pendingAuthorizations {
            authorizations[req]?.backend = nil
            dispatchAuthorization(req)
        }
        backend.pendingAuthorizations.removeAll()
    }

    // MARK: Commands from backends

    /// Carries out a backend's command. One that acts on this node's sockets directly (rather
    /// than through the cluster, where it keeps its place in the stream) waits until the
    /// adapter has applied this node's earlier requests, so every command keeps the order of
    /// the lines (§9) when the adapter applies its own requests late (recovery on a stream).
    func handle(_ request: BackendRequest, from backend: Backend) {
        guard request.command.actsOnSocketsDirectly else { return perform(request, from: backend) }
        adapter.afterOwnRequests { [weak self] in self?.perform(request, from: backend) }
    }

    private func perform(_ request: BackendRequest, from backend: Backend) {
        let id = request.id
        do {
            switch request.command {
            case .hello:
                throw BridgeError.badMessage("hello was already said on this connection")
            case .ack(let sid, let nsp, let ack, let args):
                try requireNamespace(nsp)
                shards.withShard(owning: sid, { $0.socket(id: sid, namespace: nsp)?.sendAck(ack, args) ?? false }) { [self] sent in
                    guard sent else {
                        if id != nil {
                            report(BridgeError(code: "unknown_ack", message: "ack \(ack) of \(sid) in \(nsp) is not pending"), id: id, line: request.command.type, to: backend)
                        }
                        return
                    }
                    succeed(id, backend)
                }
            case .emit(let emit):
                try self.emit(emit, id: id, backend: backend)
            case .join(let selector, let nsp, let rooms):
                try requireNamespace(nsp)
                switch selector {
                case .socket(let sid):
                    onSocket(sid, nsp, id: id, line: request.command.type, backend: backend) { socket in
                        for room in rooms { socket.join(room) }
                    }
                case .rooms(let inRooms, let except, let local):
                    adapter.addSockets(options(nsp, inRooms, except, local: local), rooms: rooms)
                    succeed(id, backend)
                }
            case .leave(let selector, let nsp, let rooms):
                try requireNamespace(nsp)
                switch selector {
                case .socket(let sid):
                    onSocket(sid, nsp, id: id, line: request.command.type, backend: backend) { socket in
                        for room in rooms where room != sid { socket.leave(room) }
                    }
                case .rooms(let inRooms, let except, let local):
                    adapter.removeSockets(options(nsp, inRooms, except, local: local), rooms: rooms)
                    succeed(id, backend)
                }
            case .disconnect(let selector, let nsp, let close):
                try requireNamespace(nsp)
                switch selector {
                case .socket(let sid):
                    onSocket(sid, nsp, id: id, line: request.command.type, backend: backend) { $0.disconnect(close: close) }
                case .rooms(let inRooms, let except, let local):
                    adapter.disconnectSockets(options(nsp, inRooms, except, local: local), close: close)
                    succeed(id, backend)
                }
            case .fetch(let nsp, let inRooms, let except, let local),
                .count(let nsp, let inRooms, let except, let local),
                .rooms(let nsp, let inRooms, let except, let local):
                try requireNamespace(nsp)
                query(request.command, options(nsp, inRooms, except, local: local), id: id, backend: backend)
            case .accept(let req, let data):
                try resolveAuthorization(req, by: backend, .accept(data: data.isNull ? nil : data))
                succeed(id, backend)
            case .reject(let req, let message, let data):
                try resolveAuthorization(req, by: backend, .reject(message: message, data: data))
                succeed(id, backend)
            case .data(let sid, let nsp, let data):
                try requireNamespace(nsp)
                // A socket of another shard may have its `connect` line made here, for a
                // backend that takes it over: it carries the new data from now on.
                let isRemote = shards.shardIndex(owning: sid) != 0
                if isRemote { beginDataUpdate(of: sid, to: data) }
                onSocket(sid, nsp, id: id, line: request.command.type, backend: backend, work: { $0.data = data }) { [self] in
                    if isRemote { endDataUpdate(of: sid) }
                }
            case .serverEmit(let nsp, let event, let args):
                serverEmit(nsp, event, args, id: id, backend: backend)
            case .serverAck(let ack, let args):
                guard let pending = serverAcks.removeValue(forKey: ack) else {
                    if id != nil { throw BridgeError(code: "unknown_ack", message: "server ack \(ack) is not pending") }
                    return
                }
                pending.timer.cancel()
                pending.reply(args.first ?? .null)
                succeed(id, backend)
            }
        } catch let error as BridgeError {
            report(error, id: id, line: request.command.type, to: backend)
        } catch {
            report(BridgeError(code: "internal", message: "\(error)"), id: id, line: request.command.type, to: backend)
        }
    }

    /// Answers a failed command: a `reply` when it had an `id`, an `error` line otherwise.
    func report(_ error: BridgeError, id: JSONValue?, line: String, to backend: Backend) {
        logger.debug("backend command failed", metadata: ["backend": "\(backend.id)", "code": "\(error.code)", "line": "\(line)"])
        if let id {
            backend.send(BackendMessage.reply(id: id, error: error))
        } else {
            backend.send(BackendMessage.error(error, line: line))
        }
    }

    private func succeed(_ id: JSONValue?, _ backend: Backend, _ fields: [(String, JSONValue)] = []) {
        guard let id else { return }
        backend.send(BackendMessage.reply(id: id, fields: fields))
    }

    private func emit(_ emit: BackendCommand.Emit, id: JSONValue?, backend: Backend) throws {
        try requireNamespace(emit.namespace)
        emits.increment()
        let packet = switch emit.arguments {
        case .printed(let data): SocketIOPacket(type: .event, namespace: emit.namespace, printedData: data)
        case .values(let args): SocketIOPacket(type: .event, namespace: emit.namespace, data: .array([.string(emit.event)] + args))
        }
        let options = options(emit.namespace, emit.to, emit.except, local: emit.local, volatile: emit.volatile)
        guard let timeoutMS = emit.ackTimeout, let id else {
            adapter.broadcast(packet, options: options)
            return succeed(id, backend)
        }
        let timeout = TimeAmount.milliseconds(timeoutMS)
        let answer: (Result<[JSONValue], SocketIOSocket.AckFailure>) -> Void = { result in
            switch result {
            case .success(let args):
                backend.send(BackendMessage.reply(id: id, fields: [("args", .array(args))]))
            case .failure(.timeout):
                backend.send(BackendMessage.reply(id: id, error: BridgeError(code: "timeout", message: "the client did not answer within \(timeoutMS) ms")))
            case .failure(.disconnected):
                backend.send(BackendMessage.reply(id: id, error: BridgeError(code: "timeout", message: "the client disconnected before answering")))
            }
        }
        guard emit.to.count == 1, emit.except.isEmpty else {
            return broadcastWithAck(packet, options: options, timeout: timeout, timeoutMS: timeoutMS, id: id, backend: backend)
        }
        // One socket: its own ack, on its shard; not found there, the cluster is asked.
        let sid = emit.to[0]
        let (event, args) = (emit.event, emit.args)
        let home = eventLoop
        let answerHere = NIOLoopBound(answer, eventLoop: home)
        shards.withShard(owning: sid, { server in
            guard let socket = server.socket(id: sid, namespace: options.namespace) else { return false }
            socket.emit(event, args, timeout: timeout) { result in
                if server.eventLoop === home {
                    answerHere.value(result)
                } else {
                    home.execute { answerHere.value(result) }
                }
            }
            return true
        }, completion: { [self] (found: Bool) in
            if !found { broadcastWithAck(packet, options: options, timeout: timeout, timeoutMS: timeoutMS, id: id, backend: backend) }
        })
    }

    private func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        timeoutMS: Int64,
        id: JSONValue,
        backend: Backend
    ) {
        adapter.broadcastWithAck(packet, options: options, timeout: timeout) { result in
            let responses: JSONValue = .array(result.responses.map { ["sid": $0.socketID.map { .string($0) } ?? .null, "args": .array($0.args)] })
            if result.timedOut {
                let error = BridgeError(
                    code: "timeout",
                    message: "\(result.responses.count) of \(result.expected) clients answered within \(timeoutMS) ms"
                )
                backend.send(BackendMessage.reply(id: id, error: error, fields: [("responses", responses)]))
            } else {
                backend.send(BackendMessage.reply(id: id, fields: [("responses", responses)]))
            }
        }
    }

    private func serverEmit(_ nsp: String, _ event: String, _ args: [JSONValue], id: JSONValue?, backend: Backend) {
        let timeout = id == nil ? nil : configuration.requestsTimeout
        adapter.serverSideEmit(namespace: nsp, event: event, args: args, ackTimeout: timeout) { result in
            guard let id else { return }
            switch result {
            case .failure(let error):
                backend.send(BackendMessage.reply(id: id, error: Self.bridgeError(error)))
            case .success(let result) where result.timedOut:
                let error = BridgeError(code: "timeout", message: "\(result.responses.count) of \(result.expected) nodes answered in time")
                backend.send(BackendMessage.reply(id: id, error: error, fields: [("responses", .array(result.responses))]))
            case .success(let result):
                backend.send(BackendMessage.reply(id: id, fields: [("responses", .array(result.responses))]))
            }
        }
    }

    private func query(_ command: BackendCommand, _ options: BroadcastOptions, id: JSONValue?, backend: Backend) {
        adapter.fetchSockets(options) { result in
            guard let id else { return }
            switch result {
            case .failure(let error):
                backend.send(BackendMessage.reply(id: id, error: Self.bridgeError(error)))
            case .success(let sockets):
                switch command {
                case .count:
                    backend.send(BackendMessage.reply(id: id, fields: [("count", .int(Int64(sockets.count)))]))
                case .rooms:
                    var rooms = Set<String>()
                    for socket in sockets { rooms.formUnion(socket.rooms.filter { $0 != socket.id }) }
                    backend.send(BackendMessage.reply(id: id, fields: [("rooms", .array(rooms.sorted().map { .string($0) }))]))
                default:
                    backend.send(BackendMessage.reply(id: id, fields: [("sockets", .array(sockets.map(\.json)))]))
                }
            }
        }
    }

    private static func bridgeError(_ error: AdapterError) -> BridgeError {
        switch error {
        case .timeout: .timeout
        case .unavailable(let why): BridgeError(code: "unavailable", message: why)
        }
    }

    private func options(
        _ nsp: String,
        _ rooms: [String],
        _ except: [String],
        local: Bool,
        volatile: Bool = false
    ) -> BroadcastOptions {
        BroadcastOptions(namespace: nsp, rooms: Set(rooms), except: Set(except), volatile: volatile, local: local)
    }

    private func requireNamespace(_ nsp: String) throws {
        guard namespaceExists(nsp) else { throw BridgeError.unknownNamespace(nsp) }
    }

    /// Runs `work` on the socket `sid` of `nsp`, on its shard, then `done` back here, and
    /// answers the command: "ok", or an unknown sid.
    private func onSocket(
        _ sid: String,
        _ nsp: String,
        id: JSONValue?,
        line: String,
        backend: Backend,
        work: @escaping @Sendable (SocketIOSocket) -> Void,
        done: (() -> Void)? = nil
    ) {
        shards.withShard(owning: sid, { server in
            guard let socket = server.socket(id: sid, namespace: nsp) else { return false }
            work(socket)
            return true
        }, completion: { [self] (found: Bool) in
            done?()
            if found {
                succeed(id, backend)
            } else {
                report(BridgeError.unknownSid(sid, nsp), id: id, line: line, to: backend)
            }
        })
    }

    // MARK: Authorization

    private func requiresAuthorization(_ nsp: String) -> Bool {
        authorizedNamespaces.contains(nsp)
    }

    /// Asks an authorizing backend about `req`, or parks it in a group in grace.
    private func dispatchAuthorization(_ req: Int) {
        guard var pending = authorizations[req] else { return }
        let nsp = pending.request.namespace
        let attached = groups.values.sorted { $0.name < $1.name }.compactMap {
            $0.authorizer(for: nsp, socketID: pending.request.socketID)
        }
        if !attached.isEmpty {
            let backend = attached[BackendGroup.stableIndex(pending.request.socketID, count: attached.count)]
            pending.backend = backend
            authorizations[req] = pending
            backend.pendingAuthorizations.insert(req)
            let request = pending.request
            backend.send(BackendMessage.connect(
                sid: request.socketID, namespace: nsp, auth: request.auth,
                handshake: request.handshake.json, data: .null, req: req, recovered: request.recovering
            ))
        } else if let waiting = groups.values.first(where: { $0.isInGrace && $0.authorizingNamespaces.contains(nsp) }) {
            waiting.pendingAuthorizations.append(req)
        } else {
            authorizationsUnavailable.increment()
            if let count = warnings.record("authorize " + nsp) {
                logger.warning("refusing clients: no backend that authorizes the namespace is attached", metadata: [
                    "nsp": "\(nsp)", "refused": "\(count)",
                    "hint": "attach a backend whose hello has \"authorize\":true and lists \(nsp) in nsps",
                ])
            }
            finishAuthorization(req, .reject(message: "authorization unavailable", data: nil))
        }
    }

    private func resolveAuthorization(_ req: Int, by backend: Backend, _ decision: ConnectDecision) throws {
        guard let pending = authorizations[req], pending.backend === backend else {
            throw BridgeError(code: "unknown_req", message: "authorization request \(req) is not pending for this backend")
        }
        backend.pendingAuthorizations.remove(req)
        finishAuthorization(req, decision)
    }

    private func finishAuthorization(_ req: Int, _ decision: ConnectDecision) {
        guard let pending = authorizations.removeValue(forKey: req) else { return }
        pending.timer.cancel()
        pending.backend?.pendingAuthorizations.remove(req)
        pending.decide(decision)
    }
}

extension Bridge: AdapterDelegate {
    public func adapter(
        didReceiveServerSideEmit event: String,
        args: [JSONValue],
        namespace: String,
        from node: String,
        reply: ((JSONValue) -> Void)?
    ) {
        var ack: Int?
        if let reply {
            let number = nextServerAck
            nextServerAck += 1
            let timer = eventLoop.assumeIsolated().scheduleTask(in: configuration.requestsTimeout) { [weak self] in
                guard let self else { return }
                self.serverAcks.removeValue(forKey: number)
            }
            serverAcks[number] = (reply, timer)
            ack = number
        }
        let message = BackendMessage.serverEvent(namespace: namespace, event: event, args: args, node: node, ack: ack)
        let line = Backend.line(message, allocator: ByteBufferAllocator())
        forEachGroup(serving: namespace) { $0.deliver(.line(namespace: namespace, line)) }
    }
}

extension Bridge: SocketEventSink {
    public func namespaceExists(_ namespace: String) -> Bool {
        configuration.namespaces.contains(namespace) || configuration.authorizedNamespaces.contains(namespace)
            || groups.values.contains { $0.namespaces.contains(namespace) }
    }

    public func authorize(_ request: ConnectRequest, decide: @escaping (ConnectDecision) -> Void) {
        guard !isShuttingDown else { return decide(.reject(message: "server shutting down", data: nil)) }
        guard requiresAuthorization(request.namespace) else { return decide(.accept(data: nil)) }
        let req = nextReq
        nextReq += 1
        let timer = eventLoop.assumeIsolated().scheduleTask(in: configuration.authorizationTimeout) { [weak self] in
            guard let self else { return }
            self.logger.info("authorization timed out", metadata: ["nsp": "\(request.namespace)", "socket": "\(request.socketID)"])
            self.finishAuthorization(req, .reject(message: "authorization timeout", data: nil))
        }
        authorizations[req] = PendingAuthorization(request: request, decide: decide, timer: timer, backend: nil)
        dispatchAuthorization(req)
    }

    public func authorizationAbandoned(socketID: String, namespace: String) {
        guard let req = authorizations.first(where: { $0.value.request.socketID == socketID })?.key,
            let pending = authorizations.removeValue(forKey: req)
        else { return }
        pending.timer.cancel()
        pending.backend?.pendingAuthorizations.remove(req)
        for group in groups.values { group.pendingAuthorizations.removeAll { $0 == req } }
    }

    public func socketDidConnect(_ socket: SocketIOSocket) {
        var line: ByteBuffer?
        forEachGroup(serving: socket.namespace.name) { group in
            if line == nil { line = Backend.line(BackendMessage.connect(socket, resumed: false), allocator: ByteBufferAllocator()) }
            group.deliver(.connect(.local(socket), line: line))
        }
    }

    public func socket(_ socket: SocketIOSocket, didReceive event: SocketIOEvent) {
        let nsp = socket.namespace.name
        guard groups.values.contains(where: { $0.namespaces.contains(nsp) }) else {
            return dropUnserved(event.name, namespace: nsp)
        }
        let line = BackendMessage.eventLine(sid: socket.id, namespace: nsp, event: event, allocator: ByteBufferAllocator())
        forEachGroup(serving: nsp) { $0.deliver(.event(.local(socket), line)) }
    }

    /// A client's event that no backend will see: no group serves its namespace, not even one
    /// in grace. The warning names the namespace, since the client itself is told nothing.
    fileprivate func dropUnserved(_ event: String, namespace nsp: String) {
        unservedDrops.increment()
        guard let count = warnings.record("events " + nsp) else { return }
        logger.warning("dropping client events: no backend serves the namespace", metadata: [
            "nsp": "\(nsp)", "dropped": "\(count)", "event": "\(event.prefix(64))",
            "hint": "attach a backend whose hello lists \(nsp) in nsps",
        ])
    }

    public func socket(_ socket: SocketIOSocket, didDisconnectWith reason: DisconnectReason) {
        let message = BackendMessage.disconnect(sid: socket.id, namespace: socket.namespace.name, reason: reason)
        let line = Backend.line(message, allocator: ByteBufferAllocator())
        forEachGroup(serving: socket.namespace.name) { $0.deliver(.disconnect(.local(socket), line)) }
    }

    fileprivate func forEachGroup(serving namespace: String, _ body: (BackendGroup) -> Void) {
        for group in groups.values where group.namespaces.contains(namespace) { body(group) }
    }
}

// MARK: Shards

extension Bridge {
    /// The sink for the Socket.IO server of another shard: it hands that shard's clients to
    /// `bridge`. Call on that shard's loop; then give the sinks to `connect(shardSinks:)`, which
    /// tells them the namespaces that exist.
    public static func makeShardSink(for bridge: NIOLoopBound<Bridge>, on loop: EventLoop) -> ShardSink {
        ShardSink(bridge: bridge, loop: loop, served: [])
    }

    /// The other shards' sinks, to be told which namespaces exist. Call on the home loop.
    public func connect(shardSinks: [NIOLoopBound<ShardSink>]) {
        self.shardSinks = shardSinks
        shareServedNamespaces()
    }

    /// The namespaces a client may join now.
    var servedNamespaces: Set<String> {
        groups.values.reduce(into: configuration.namespaces.union(configuration.authorizedNamespaces)) { $0.formUnion($1.namespaces) }
    }

    /// Gives the other shards the namespaces that exist now, for their CONNECT packets. A
    /// CONNECT that crosses a backend's attaching is answered by the copy the shard had.
    func shareServedNamespaces() {
        guard !shardSinks.isEmpty else { return }
        let served = servedNamespaces
        for sink in shardSinks {
            sink.eventLoop.execute { sink.value.served = served }
        }
    }

    /// A socket of another shard connected; `line` is its `connect` line, made on its loop.
    func remoteSocketDidConnect(_ remote: RemoteSocket, line: ByteBuffer) {
        if let rooms = remote.recoveredRooms { recoveredRemoteRooms[remote.id] = rooms }
        let socket = described(remote)
        // Data set while the connect was on its way is not in the line: each group makes its own.
        let line = dataUpdates.isEmpty || dataUpdates[remote.id] == nil ? line : nil
        forEachGroup(serving: remote.namespace) { $0.deliver(.connect(socket, line: line)) }
    }

    func remoteSocket(_ remote: RemoteSocket, didReceiveEvent event: String, line: ByteBuffer) {
        guard groups.values.contains(where: { $0.namespaces.contains(remote.namespace) }) else {
            return dropUnserved(event, namespace: remote.namespace)
        }
        let socket = described(remote)
        forEachGroup(serving: remote.namespace) { $0.deliver(.event(socket, line)) }
    }

    func remoteSocket(_ remote: RemoteSocket, didDisconnectWith reason: DisconnectReason) {
        let socket = described(remote)
        if remote.recovered { recoveredRemoteRooms.removeValue(forKey: remote.id) }
        let message = BackendMessage.disconnect(sid: remote.id, namespace: remote.namespace, reason: reason)
        let line = Backend.line(message, allocator: ByteBufferAllocator())
        forEachGroup(serving: remote.namespace) { $0.deliver(.disconnect(socket, line)) }
    }

    /// A socket of another shard as its shard described it, with what the bridge knows better:
    /// the data of `data` commands its shard has not carried out yet, and a recovered socket's
    /// rooms as its connect brought them.
    private func described(_ remote: RemoteSocket) -> BridgeSocket {
        var remote = remote
        if !dataUpdates.isEmpty, let update = dataUpdates[remote.id] { remote.data = update.data }
        if remote.recovered, remote.recoveredRooms == nil { remote.recoveredRooms = recoveredRemoteRooms[remote.id] }
        return .remote(remote)
    }

    /// A `data` command about the socket `id` of another shard is handed to its shard: until it
    /// is carried out there, what the shard says of the socket's data is older than `data`;
    /// messages about it that wait in a grace queue take `data` now.
    private func beginDataUpdate(of id: String, to data: JSONValue) {
        dataUpdates[id, default: DataUpdate(data: data, pending: 0)].data = data
        dataUpdates[id]?.pending += 1
        for group in groups.values { group.replaceQueuedData(of: id, with: data) }
    }

    /// Its shard carried out a `data` command about the socket `id`: what it says next is new.
    private func endDataUpdate(of id: String) {
        guard let update = dataUpdates[id] else { return }
        if update.pending > 1 {
            dataUpdates[id]?.pending -= 1
        } else {
            dataUpdates.removeValue(forKey: id)
        }
    }
}
