import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SidecastJSON
import SocketIO

/// The cluster adapter: the Socket.IO cluster protocol (request ids, answers, timeouts, node
/// counting, answering other nodes) over any ``ClusterTransport``, as socket.io-adapter's
/// `ClusterAdapter` is over its subclasses' `doPublish`. Classic Redis pub/sub
/// (``RedisPubSubTransport``) and sharded pub/sub (``ShardedRedisTransport``) are transports.
///
/// Local work never waits for the medium: a broadcast is delivered to this node's clients at
/// once and published for the others (queued while Redis is away). The exception is a
/// transport that orders this node's own requests with everyone else's (recovery on a Redis
/// stream, ``ClusterTransport/appliesOwnRequestsOnReadBack``): those wait for the read-back,
/// as Node's streams adapter waits for `XADD` before it applies them locally. Requests that need answers
/// from other nodes fail with a clear error when the transport can't count the nodes.
///
/// A node on several event loops is still one node of the cluster (one uid, counted once by
/// `serverCount`, one answer per request): requests gather over this node's shards
/// (``NodeShards``) first, then over the other nodes. Confined to the home shard's event loop.
public final class ClusterAdapter: Adapter, ClusterTransportDelegate {
    public weak var delegate: AdapterDelegate?
    /// This node's id on the wire; a node ignores messages carrying its own uid.
    public let uid: String
    private let shards: NodeShards
    private let transport: ClusterTransport
    /// How long requests wait for other nodes when the caller gives no timeout of its own.
    private let requestsTimeout: TimeAmount
    private let logger: Logger
    private var served: Set<String> = []
    private let requests: PendingRequests
    /// This node's requests the transport applies on read-back: how many were published, how
    /// many applied, and the work waiting for some of them (``afterOwnRequests(_:)``).
    private var ownPublished: UInt64 = 0
    private var ownApplied: UInt64 = 0
    private var waitingForOwn = CircularBuffer<(after: UInt64, work: () -> Void)>()
    private var ownWaitTimeout: Scheduled<Void>?

    public init(shards: NodeShards, transport: ClusterTransport, uid: String, requestsTimeout: TimeAmount, logger: Logger) {
        self.shards = shards
        self.transport = transport
        self.uid = uid
        self.requestsTimeout = requestsTimeout
        self.logger = logger
        self.requests = PendingRequests(eventLoop: shards.eventLoop, logger: logger)
        transport.delegate = self
    }

    /// The adapter of a node on one event loop. Call on the server's loop.
    public convenience init(server: SocketIOServer, transport: ClusterTransport, uid: String, requestsTimeout: TimeAmount, logger: Logger) {
        self.init(shards: NodeShards(server: server), transport: transport, uid: uid, requestsTimeout: requestsTimeout, logger: logger)
    }

    /// Requests of this node still waiting for answers.
    var pendingRequestCount: Int { requests.count }

    public func serve(namespace name: String) {
        guard served.insert(name).inserted else { return }
        transport.serve(namespace: name)
        guard transport.followsRooms else { return }
        shards.followRooms(of: name) { [weak self] room, exists, isPrivate in
            guard let self else { return }
            if exists {
                self.transport.roomCreated(room, isPrivate: isPrivate, namespace: name)
            } else {
                self.transport.roomDeleted(room, namespace: name)
            }
        }
    }

    public func close() {
        transport.close()
    }

    // MARK: Operations of this node

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        if !options.local {
            transport.publish(.broadcast(packet: packet, options: ClusterOptions(options), requestId: nil), namespace: options.namespace)
            if transport.appliesOwnRequestsOnReadBack { return ownPublished += 1 }
        }
        shards.broadcast(packet, options: options)
    }

    public func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        completion: @escaping (BroadcastAckResult) -> Void
    ) {
        let request = BroadcastAckRequest(completion: completion)
        request.startLocally(on: shards, packet, options: options)
        guard !options.local else { return request.expectNoOtherNodes(timeout: timeout, on: shards.eventLoop) }
        let requestID = Self.makeRequestID()
        request.onFinish = { [weak self] in self?.requests.forget(requestID) }
        requests.track(requestID, request, what: "broadcast with ack", timeout: timeout)
        let message = ClusterRequest.broadcast(packet: packet, options: ClusterOptions(options, timeout: timeout), requestId: requestID)
        transport.publish(message, namespace: options.namespace)
        transport.serverCount(namespace: options.namespace) { nodes in
            // Without the medium no other node can answer: the local answers are all there is.
            request.expect(otherNodes: max(((try? nodes.get()) ?? 1) - 1, 0))
        }
    }

    public func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        if options.local || !transport.appliesOwnRequestsOnReadBack {
            shards.addSockets(options, rooms: rooms)
        }
        guard !options.local else { return }
        transport.publish(.socketsJoin(options: ClusterOptions(options), rooms: rooms), namespace: options.namespace)
        if transport.appliesOwnRequestsOnReadBack { ownPublished += 1 }
    }

    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        if options.local || !transport.appliesOwnRequestsOnReadBack {
            shards.removeSockets(options, rooms: rooms)
        }
        guard !options.local else { return }
        transport.publish(.socketsLeave(options: ClusterOptions(options), rooms: rooms), namespace: options.namespace)
        if transport.appliesOwnRequestsOnReadBack { ownPublished += 1 }
    }

    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        if options.local || !transport.appliesOwnRequestsOnReadBack {
            shards.disconnectSockets(options, close: close)
        }
        guard !options.local else { return }
        transport.publish(.disconnectSockets(options: ClusterOptions(options), close: close), namespace: options.namespace)
        if transport.appliesOwnRequestsOnReadBack { ownPublished += 1 }
    }

    public func fetchSockets(_ options: BroadcastOptions, completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void) {
        shards.fetchSockets(options, describe: SocketDetails.init) { [self] local in
            guard !options.local else { return completion(.success(local)) }
            askOtherNodes(options.namespace, failure: { completion(.failure($0)) }, alone: { completion(.success(local)) }) { others in
                let requestID = Self.makeRequestID()
                let request = FetchRequest(namespace: options.namespace, otherNodes: others, local: local, completion: completion)
                self.requests.track(requestID, request, what: "fetchSockets", timeout: self.requestsTimeout)
                self.transport.publish(.fetchSockets(options: ClusterOptions(options), requestId: requestID), namespace: options.namespace)
            }
        }
    }

    public func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        guard transport.carriesAllRoomsRequests else {
            // Every room has a member, so the rooms of all sockets of all nodes are all the rooms.
            return fetchSockets(BroadcastOptions(namespace: namespace)) { result in
                completion(result.map { sockets in Set(sockets.flatMap(\.rooms)) })
            }
        }
        shards.allRooms(namespace: namespace) { [self] local in
            askOtherNodes(namespace, failure: { completion(.failure($0)) }, alone: { completion(.success(local)) }) { others in
                let requestID = Self.makeRequestID()
                let request = AllRoomsRequest(otherNodes: others, local: local, completion: completion)
                self.requests.track(requestID, request, what: "allRooms", timeout: self.requestsTimeout)
                self.transport.publish(.allRooms(requestId: requestID), namespace: namespace)
            }
        }
    }

    public func serverSideEmit(
        namespace: String,
        event: String,
        args: [JSONValue],
        ackTimeout: TimeAmount?,
        completion: @escaping (Result<ServerSideEmitResult, AdapterError>) -> Void
    ) {
        let packet: [JSONValue] = [.string(event)] + args
        let nobody = ServerSideEmitResult(responses: [], expected: 0, timedOut: false)
        guard let ackTimeout else {
            transport.publish(.serverSideEmit(requestId: nil, packet: packet), namespace: namespace)
            return completion(.success(nobody))
        }
        askOtherNodes(namespace, failure: { completion(.failure($0)) }, alone: { completion(.success(nobody)) }) { others in
            let requestID = Self.makeRequestID()
            let request = ServerSideEmitRequest(otherNodes: others, completion: completion)
            self.requests.track(requestID, request, what: "serverSideEmit", timeout: ackTimeout)
            self.transport.publish(.serverSideEmit(requestId: requestID, packet: packet), namespace: namespace)
        }
    }

    /// Runs `ask` with the number of other nodes when there are some, `alone` when this node
    /// is the only one, `failure` when the transport can't tell.
    private func askOtherNodes(
        _ namespace: String,
        failure: @escaping (AdapterError) -> Void,
        alone: @escaping () -> Void,
        ask: @escaping (_ others: Int) -> Void
    ) {
        transport.serverCount(namespace: namespace) { nodes in
            switch nodes {
            case .failure(let error): failure(error)
            case .success(let nodes) where nodes <= 1: alone()
            case .success(let nodes): ask(nodes - 1)
            }
        }
    }

    // MARK: What other nodes send

    public func transport(holdsRoom room: String, namespace: String) -> Bool {
        shards.holdsRoom(room, namespace: namespace)
    }

    public func transport(didReceive response: ClusterResponse) {
        requests.received(response)
    }

    public func transport(didReadBack request: ClusterRequest, namespace: String) {
        switch request {
        case .broadcast(let packet, let options, nil):
            shards.broadcast(packet, options: options.local(namespace))
        case .socketsJoin(let options, let rooms):
            shards.addSockets(options.local(namespace), rooms: rooms)
        case .socketsLeave(let options, let rooms):
            shards.removeSockets(options.local(namespace), rooms: rooms)
        case .disconnectSockets(let options, let close):
            shards.disconnectSockets(options.local(namespace), close: close)
        case .broadcast, .fetchSockets, .allRooms, .serverSideEmit:
            // Applied (or answered) here when sent: nothing waits for the read-back.
            return
        }
        // An entry Redis took twice (appended again after a lost connection) counts once.
        ownApplied = min(ownApplied + 1, ownPublished)
        runWorkWaitingForOwn()
    }

    public func afterOwnRequests(_ work: @escaping () -> Void) {
        guard ownApplied < ownPublished || !waitingForOwn.isEmpty else { return work() }
        waitingForOwn.append((ownPublished, work))
        guard ownWaitTimeout == nil else { return }
        scheduleOwnWaitTimeout()
    }

    private func runWorkWaitingForOwn() {
        while let first = waitingForOwn.first, first.after <= ownApplied {
            waitingForOwn.removeFirst()
            first.work()
        }
        if waitingForOwn.isEmpty {
            ownWaitTimeout?.cancel()
            ownWaitTimeout = nil
        }
    }

    /// What an append the stream never got (dropped from a full outbox while Redis was away)
    /// would hold up forever: past the requests timeout, the work waits no longer.
    private func scheduleOwnWaitTimeout() {
        ownWaitTimeout = shards.eventLoop.assumeIsolated().scheduleTask(in: requestsTimeout) { [weak self] in
            guard let self else { return }
            self.ownWaitTimeout = nil
            guard let first = self.waitingForOwn.first else { return }
            self.logger.warning("own requests not read back from the stream in time; carrying on without them", metadata: [
                "missing": "\(first.after - self.ownApplied)",
            ])
            self.ownApplied = first.after
            self.runWorkWaitingForOwn()
            if !self.waitingForOwn.isEmpty { self.scheduleOwnWaitTimeout() }
        }
    }

    public func transport(didReceive request: ClusterRequest, from sender: String?, namespace: String) {
        if sender == uid { return }
        switch request {
        case .broadcast(let packet, let options, nil):
            shards.broadcast(packet, options: options.local(namespace))
        case .broadcast(let packet, let options, let requestID?):
            // The count goes out before any answer, whatever shard answers first: the
            // requester learns how many answers to wait for from it.
            let cancel = shards.broadcastWithAck(packet, options: options.local(namespace), counted: { [weak self] count in
                self?.transport.publishResponse(.broadcastClientCount(requestId: requestID, clientCount: count), to: sender, namespace: namespace)
            }, onAck: { [weak self] _, args in
                self?.transport.publishResponse(.broadcastAck(requestId: requestID, packet: args.first), to: sender, namespace: namespace)
            })
            // Late answers are useless to the requester once its own timeout passed.
            let timeout = options.flags.timeout.map { TimeAmount.milliseconds($0) } ?? requestsTimeout
            shards.eventLoop.assumeIsolated().scheduleTask(in: timeout) { cancel() }
        case .socketsJoin(let options, let rooms):
            shards.addSockets(options.local(namespace), rooms: rooms)
        case .socketsLeave(let options, let rooms):
            shards.removeSockets(options.local(namespace), rooms: rooms)
        case .disconnectSockets(let options, let close):
            shards.disconnectSockets(options.local(namespace), close: close)
        case .fetchSockets(let options, let requestID):
            shards.fetchSockets(options.local(namespace), describe: {
                RedisSocketDetails(id: $0.id, handshake: Self.nodeHandshake($0), rooms: [$0.id] + $0.rooms.subtracting([$0.id]).sorted(), data: $0.data)
            }) { [weak self] sockets in
                self?.transport.publishResponse(.fetchSockets(requestId: requestID, sockets: sockets), to: sender, namespace: namespace)
            }
        case .allRooms(let requestID):
            shards.allRooms(namespace: namespace) { [weak self] rooms in
                self?.transport.publishResponse(.allRooms(requestId: requestID, rooms: rooms.sorted()), to: sender, namespace: namespace)
            }
        case .serverSideEmit(let requestID, let packet):
            guard case .string(let event)? = packet.first else {
                return logger.warning("skipping a server-side emit without an event name", metadata: ["namespace": "\(namespace)"])
            }
            var reply: ((JSONValue) -> Void)?
            if let requestID {
                var replied = false
                reply = { [weak self] answer in
                    // Only one answer per node counts, as Node's callback guards.
                    guard !replied else { return }
                    replied = true
                    self?.transport.publishResponse(.serverSideEmit(requestId: requestID, packet: answer), to: sender, namespace: namespace)
                }
            }
            delegate?.adapter(
                didReceiveServerSideEmit: event,
                args: packet.dropFirst().map(\.revivingNodeBuffers),
                namespace: namespace,
                from: sender ?? "emitter",
                reply: reply
            )
        }
    }

    // MARK: Helpers

    /// The handshake as a Node server describes it, so Node nodes can read our fetch answers.
    static func nodeHandshake(_ socket: SocketIOSocket) -> JSONValue {
        guard case .object(var members) = socket.handshake.json else { return socket.handshake.json }
        members["time"] = .string(Self.httpDate(milliseconds: socket.handshake.issued))
        members["xdomain"] = .bool(socket.handshake.headers["origin"] != nil)
        members["auth"] = socket.auth ?? [:]
        return .object(members)
    }

    private static func httpDate(milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// 16 hex digits, as socket.io-adapter's `randomId()`.
    static func makeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value: UInt64 = generator.next()
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
