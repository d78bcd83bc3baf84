import Logging
import Metrics
import NIOCore
import Redis
import SidecastJSON
import SocketIO

/// The cluster adapter over Redis 7 sharded pub/sub, in the wire format of
/// `@socket.io/redis-adapter`'s `createShardedAdapter` (socket.io-adapter's `ClusterAdapter`
/// messages, see ``ClusterMessage``), with the node counting of `ClusterAdapterWithHeartbeat`.
///
/// Channels, per namespace: `prefix#nsp#` for every node, `prefix#nsp#uid#` for answers to
/// this node, and in the "dynamic" subscription mode `prefix#nsp#room#` for each public room
/// (not a socket's own room) while it has a member here, so a broadcast to one room reaches
/// only the shard of that room's channel and the nodes that have the room.
///
/// Nodes count each other by heartbeats (every `heartbeatInterval` without other traffic,
/// forgotten after `heartbeatTimeout` of silence): requests wait for the nodes seen alive.
/// Confined to the Socket.IO server's event loop.
public final class ShardedRedisAdapter: Adapter {
    public weak var delegate: AdapterDelegate?
    /// This node's id on the wire; a node ignores messages carrying its own uid.
    public let uid: String
    private let server: SocketIOServer
    private let redis: RedisShardedClient
    private let prefix: String
    private let requestsTimeout: TimeAmount
    private let heartbeatInterval: TimeAmount
    private let heartbeatTimeout: TimeAmount
    private let logger: Logger
    private var namespaces: [String: ServedNamespace] = [:]
    private var requests: [String: (request: PendingRequest, timer: Scheduled<Void>)] = [:]
    private var evictionTimer: Scheduled<Void>?
    private let requestTimeouts = Counter(label: "sidecast_cluster_request_timeouts_total")

    /// What this node keeps per namespace it serves.
    private final class ServedNamespace {
        let channels: RedisChannels
        let responseChannel: String
        /// Room channels subscribed in the dynamic mode.
        var roomChannels: Set<String> = []
        /// Other nodes, by uid, with when they were last heard of.
        var nodes: [String: NIODeadline] = [:]
        var lastPublish = NIODeadline.now()
        var heartbeat: Scheduled<Void>?

        init(channels: RedisChannels, uid: String) {
            self.channels = channels
            self.responseChannel = "\(channels.broadcast)\(uid)#"
        }
    }

    /// Requests of ours waiting for answers; `missing` holds the nodes yet to answer.
    private enum PendingRequest {
        case fetch(FetchRequest, missing: Set<String>)
        case serverSideEmit(ServerSideEmitRequest, missing: Set<String>)
        case broadcastAck(BroadcastAckRequest)
    }

    public init(
        server: SocketIOServer,
        redis: RedisShardedClient,
        uid: String,
        prefix: String,
        requestsTimeout: TimeAmount,
        heartbeatInterval: TimeAmount = .seconds(5),
        heartbeatTimeout: TimeAmount = .seconds(10),
        logger: Logger
    ) {
        self.server = server
        self.redis = redis
        self.uid = uid
        self.prefix = prefix
        self.requestsTimeout = requestsTimeout
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.logger = logger
    }

    /// How many nodes serve `namespace`, this one included, as heartbeats tell.
    public func serverCount(namespace: String) -> Int {
        1 + (namespaces[namespace]?.nodes.count ?? 0)
    }

    public func serve(namespace name: String) {
        guard namespaces[name] == nil else { return }
        let state = ServedNamespace(channels: RedisChannels(prefix: prefix, namespace: name), uid: uid)
        namespaces[name] = state
        for channel in [state.channels.broadcast, state.responseChannel] {
            redis.ssubscribe(channel) { [weak self] channel, message in
                self?.received(message, on: channel, state)
            }
        }
        let namespace = server.namespace(named: name)
        namespace.onRoomChange = { [weak self, weak namespace] room, exists in
            guard let self, let namespace else { return }
            self.roomChanged(room, exists: exists, in: namespace, state)
        }
        for room in namespace.rooms.keys { roomChanged(room, exists: true, in: namespace, state) }
        if evictionTimer == nil { scheduleEviction() }
        publish(.initialHeartbeat, state)
    }

    /// Tells the other nodes this one leaves, so they stop waiting for it at once.
    public func close() {
        evictionTimer?.cancel()
        evictionTimer = nil
        for state in namespaces.values {
            publish(.adapterClose, state)
            state.heartbeat?.cancel()
            state.heartbeat = nil
        }
    }

    // MARK: Operations of this node

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        if !options.local, let state = namespaces[options.namespace] {
            publish(.broadcast(packet: packet, options: clusterOptions(options), requestId: nil), state)
        }
        server.broadcast(packet, options: options)
    }

    public func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        completion: @escaping (BroadcastAckResult) -> Void
    ) {
        let request = BroadcastAckRequest(completion: completion)
        let cancel = request.startLocally(on: server, packet, options: options)
        guard !options.local, let state = namespaces[options.namespace] else {
            request.expect(nodes: 1)
            return
        }
        let requestID = Self.makeRequestID()
        track(requestID, .broadcastAck(request), what: "broadcast with ack", timeout: timeout) {
            cancel()
            request.finish(timedOut: true)
        }
        request.onFinish = { [weak self] in self?.finish(requestID) }
        let flags = RedisBroadcastFlags(volatile: options.volatile, timeout: timeout.nanoseconds / 1_000_000)
        let message = ClusterMessage.Body.broadcast(packet: packet, options: ClusterOptions(
            rooms: options.rooms.sorted(), except: options.except.sorted(), flags: flags
        ), requestId: requestID)
        publish(message, state)
        // Without Redis no other node can answer: the local answers are all there is.
        request.expect(nodes: redis.isConnected ? 1 + state.nodes.count : 1)
    }

    public func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.addSockets(options, rooms: rooms)
        guard !options.local, let state = namespaces[options.namespace] else { return }
        publish(.socketsJoin(options: clusterOptions(options), rooms: rooms), state)
    }

    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.removeSockets(options, rooms: rooms)
        guard !options.local, let state = namespaces[options.namespace] else { return }
        publish(.socketsLeave(options: clusterOptions(options), rooms: rooms), state)
    }

    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        server.disconnectSockets(options, close: close)
        guard !options.local, let state = namespaces[options.namespace] else { return }
        publish(.disconnectSockets(options: clusterOptions(options), close: close), state)
    }

    public func fetchSockets(
        _ options: BroadcastOptions,
        completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void
    ) {
        let local = server.fetchSockets(options).map(SocketDetails.init)
        guard !options.local, let state = namespaces[options.namespace], !state.nodes.isEmpty else {
            return completion(.success(local))
        }
        guard redis.isConnected else { return completion(.failure(.unavailable("Redis is unreachable"))) }
        let requestID = Self.makeRequestID()
        let request = FetchRequest(namespace: options.namespace, expected: state.nodes.count + 1, sockets: local, completion: completion)
        track(requestID, .fetch(request, missing: Set(state.nodes.keys)), what: "fetchSockets") {
            request.completion(.failure(.timeout))
        }
        publish(.fetchSockets(options: clusterOptions(options), requestId: requestID), state)
    }

    /// The cluster protocol has no room listing of its own: every room has a member, so the
    /// rooms of all sockets of all nodes are all the rooms.
    public func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        fetchSockets(BroadcastOptions(namespace: namespace)) { result in
            completion(result.map { sockets in Set(sockets.flatMap(\.rooms)) })
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
        guard let state = namespaces[namespace] else {
            return completion(.success(ServerSideEmitResult(responses: [], expected: 0, timedOut: false)))
        }
        guard let ackTimeout else {
            publish(.serverSideEmit(requestId: nil, packet: packet), state)
            return completion(.success(ServerSideEmitResult(responses: [], expected: 0, timedOut: false)))
        }
        guard redis.isConnected else { return completion(.failure(.unavailable("Redis is unreachable"))) }
        guard !state.nodes.isEmpty else {
            return completion(.success(ServerSideEmitResult(responses: [], expected: 0, timedOut: false)))
        }
        let requestID = Self.makeRequestID()
        let request = ServerSideEmitRequest(expected: state.nodes.count) { completion(.success($0)) }
        track(requestID, .serverSideEmit(request, missing: Set(state.nodes.keys)), what: "serverSideEmit", timeout: ackTimeout) {
            request.finish(timedOut: true)
        }
        request.onFinish = { [weak self] in self?.finish(requestID) }
        publish(.serverSideEmit(requestId: requestID, packet: packet), state)
    }

    // MARK: What other nodes send

    private func received(_ bytes: ByteBuffer, on channel: String, _ state: ServedNamespace) {
        let message: ClusterMessage
        do {
            message = try ClusterMessage.decode(bytes)
        } catch {
            return logger.warning("skipping a malformed cluster message from Redis", metadata: ["channel": "\(channel)", "error": "\(error)"])
        }
        guard message.uid != uid else { return }
        if message.uid != "emitter" { state.nodes[message.uid] = .now() }
        if message.isResponse {
            return receivedResponse(message)
        }
        let namespace = state.channels.namespace
        switch message.body {
        case .initialHeartbeat:
            publish(.heartbeat, state)
        case .heartbeat:
            break
        case .adapterClose:
            removeNode(message.uid, state)
        case .broadcast(let packet, let options, nil):
            server.broadcast(packet, options: localOptions(namespace, options))
        case .broadcast(let packet, let options, let requestID?):
            let (count, cancel) = server.broadcastWithAck(packet, options: localOptions(namespace, options)) { [weak self] _, args in
                self?.respond(.broadcastAck(requestId: requestID, packet: args.first), to: message.uid, state)
            }
            respond(.broadcastClientCount(requestId: requestID, clientCount: count), to: message.uid, state)
            // Late answers are useless to the requester once its own timeout passed.
            let timeout = options.flags.timeout.map { TimeAmount.milliseconds($0) } ?? requestsTimeout
            server.eventLoop.assumeIsolated().scheduleTask(in: timeout) { cancel() }
        case .socketsJoin(let options, let rooms):
            server.addSockets(localOptions(namespace, options), rooms: rooms)
        case .socketsLeave(let options, let rooms):
            server.removeSockets(localOptions(namespace, options), rooms: rooms)
        case .disconnectSockets(let options, let close):
            server.disconnectSockets(localOptions(namespace, options), close: close)
        case .fetchSockets(let options, let requestID):
            let sockets = server.fetchSockets(localOptions(namespace, options)).map {
                RedisSocketDetails(
                    id: $0.id, handshake: RedisAdapter.nodeHandshake($0),
                    rooms: [$0.id] + $0.rooms.subtracting([$0.id]).sorted(), data: $0.data
                )
            }
            respond(.fetchSocketsResponse(requestId: requestID, sockets: sockets), to: message.uid, state)
        case .serverSideEmit(let requestID, let packet):
            guard case .string(let event)? = packet.first else {
                return logger.warning("skipping a server-side emit without an event name", metadata: ["namespace": "\(namespace)"])
            }
            var reply: ((JSONValue) -> Void)?
            if let requestID {
                reply = { [weak self] answer in
                    self?.respond(.serverSideEmitResponse(requestId: requestID, packet: answer), to: message.uid, state)
                }
            }
            delegate?.adapter(didReceiveServerSideEmit: event, args: Array(packet.dropFirst()), namespace: namespace, from: message.uid, reply: reply)
        case .fetchSocketsResponse, .serverSideEmitResponse, .broadcastClientCount, .broadcastAck:
            break
        }
    }

    private func receivedResponse(_ message: ClusterMessage) {
        guard let requestID = message.requestId, let pending = requests[requestID]?.request else { return }
        switch (pending, message.body) {
        case (.fetch(let request, var missing), .fetchSocketsResponse(_, let sockets)):
            request.sockets += sockets.map {
                SocketDetails(id: $0.id, namespace: request.namespace, rooms: $0.rooms, handshake: $0.handshake, data: $0.data)
            }
            missing.remove(message.uid)
            requests[requestID]?.request = .fetch(request, missing: missing)
            if missing.isEmpty {
                finish(requestID)
                request.completion(.success(request.sockets))
            }
        case (.serverSideEmit(let request, var missing), .serverSideEmitResponse(_, let packet)):
            missing.remove(message.uid)
            requests[requestID]?.request = .serverSideEmit(request, missing: missing)
            request.add(packet ?? .null)
            if missing.isEmpty { request.finish(timedOut: false) }
        case (.broadcastAck(let request), .broadcastClientCount(_, let count)):
            request.nodeReported(clientCount: count)
        case (.broadcastAck(let request), .broadcastAck(_, let packet)):
            request.add(.init(socketID: nil, args: packet.map { [$0] } ?? []))
        default:
            logger.debug("ignoring an answer of the wrong kind", metadata: ["requestId": "\(requestID)"])
        }
    }

    // MARK: Nodes

    /// Every second, as Node's `deadNodeEvictionInterval`.
    private func scheduleEviction() {
        evictionTimer = server.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [weak self] in
            self?.evictSilentNodes()
            self?.scheduleEviction()
        }
    }

    private func evictSilentNodes() {
        let oldest = NIODeadline.now() - heartbeatTimeout
        for state in namespaces.values {
            for (node, seen) in state.nodes where seen < oldest {
                logger.info("cluster node seems down", metadata: ["node": "\(node)", "nsp": "\(state.channels.namespace)"])
                removeNode(node, state)
            }
        }
    }

    /// Forgets a node and stops waiting for its answers.
    private func removeNode(_ node: String, _ state: ServedNamespace) {
        state.nodes[node] = nil
        for (requestID, entry) in requests {
            switch entry.request {
            case .fetch(let request, var missing) where missing.remove(node) != nil:
                requests[requestID]?.request = .fetch(request, missing: missing)
                if missing.isEmpty {
                    finish(requestID)
                    request.completion(.success(request.sockets))
                }
            case .serverSideEmit(let request, var missing) where missing.remove(node) != nil:
                requests[requestID]?.request = .serverSideEmit(request, missing: missing)
                if missing.isEmpty { request.finish(timedOut: false) }
            default:
                break
            }
        }
    }

    // MARK: Channels

    private func roomChanged(_ room: String, exists: Bool, in namespace: Namespace, _ state: ServedNamespace) {
        let channel = state.channels.room(room)
        if exists {
            // A socket's own room is private: subscribing per socket would cost more than it saves.
            guard namespace.sockets[room] == nil, state.roomChannels.insert(channel).inserted else { return }
            redis.ssubscribe(channel) { [weak self] channel, message in
                self?.received(message, on: channel, state)
            }
        } else if state.roomChannels.remove(channel) != nil {
            redis.sunsubscribe(channel)
        }
    }

    /// A plain broadcast to one public room goes on that room's channel; anything else
    /// (several rooms, a socket id, a broadcast waiting for acks, which every node must count
    /// itself into) on the namespace's.
    private func channel(for body: ClusterMessage.Body, _ state: ServedNamespace) -> String {
        if case .broadcast(_, let options, nil) = body, options.rooms.count == 1, options.rooms[0].utf16.count != 20 {
            return state.channels.room(options.rooms[0])
        }
        return state.channels.broadcast
    }

    private func publish(_ body: ClusterMessage.Body, _ state: ServedNamespace) {
        let message = ClusterMessage(uid: uid, namespace: state.channels.namespace, body: body)
        redis.spublish(channel(for: body, state), message.encode())
        state.lastPublish = .now()
        scheduleHeartbeat(state)
    }

    private func respond(_ body: ClusterMessage.Body, to requester: String, _ state: ServedNamespace) {
        let message = ClusterMessage(uid: uid, namespace: state.channels.namespace, body: body)
        redis.spublish("\(state.channels.broadcast)\(requester)#", message.encode())
    }

    /// A heartbeat goes out once `heartbeatInterval` passed without any other publish, as the
    /// timer Node refreshes on every publish; one timer per namespace, not one per publish.
    private func scheduleHeartbeat(_ state: ServedNamespace) {
        guard state.heartbeat == nil else { return }
        let due = state.lastPublish + heartbeatInterval
        state.heartbeat = server.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [weak self] in
            guard let self else { return }
            state.heartbeat = nil
            if state.lastPublish + self.heartbeatInterval <= .now() {
                self.publish(.heartbeat, state)
            } else {
                self.scheduleHeartbeat(state)
            }
        }
    }

    // MARK: Helpers

    private func track(
        _ requestID: String,
        _ request: PendingRequest,
        what: String,
        timeout: TimeAmount? = nil,
        onTimeout: @escaping () -> Void
    ) {
        let timer = server.eventLoop.assumeIsolated().scheduleTask(in: timeout ?? requestsTimeout) { [weak self] in
            guard let self, self.requests.removeValue(forKey: requestID) != nil else { return }
            self.logger.info("cluster request timed out", metadata: ["request": "\(what)", "requestId": "\(requestID)"])
            self.requestTimeouts.increment()
            onTimeout()
        }
        requests[requestID] = (request, timer)
    }

    private func finish(_ requestID: String) {
        requests.removeValue(forKey: requestID)?.timer.cancel()
    }

    private func clusterOptions(_ options: BroadcastOptions) -> ClusterOptions {
        ClusterOptions(rooms: options.rooms.sorted(), except: options.except.sorted(), flags: RedisBroadcastFlags(volatile: options.volatile))
    }

    private func localOptions(_ namespace: String, _ options: ClusterOptions) -> BroadcastOptions {
        BroadcastOptions(
            namespace: namespace, rooms: Set(options.rooms), except: Set(options.except),
            volatile: options.flags.volatile, local: true
        )
    }

    /// 16 hex digits, as socket.io-adapter's `randomId()`.
    static func makeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value: UInt64 = generator.next()
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
