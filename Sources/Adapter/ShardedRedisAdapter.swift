import Logging
import NIOCore
import Redis
import SidecastJSON
import SocketIO

/// The cluster adapter over Redis 7 sharded pub/sub, in the wire format of
/// `@socket.io/redis-adapter`'s `createShardedAdapter` (socket.io-adapter's `ClusterAdapter`
/// messages, see ``ClusterMessage``), so Sidecast and Node servers can share one cluster.
///
/// Channels, per namespace: `prefix#nsp#` for every node, `prefix#nsp#uid#` for answers to
/// this node, and in the "dynamic" subscription mode `prefix#nsp#room#` for each public room
/// (not a socket's own room) while it has a member here, so a broadcast to one room reaches
/// only the shard of that room's channel and the nodes that have the room.
///
/// Like Node's, it extends the plain `ClusterAdapter`: no heartbeats and no `ADAPTER_CLOSE`.
/// The nodes serving a namespace are the subscribers of its channel, which `PUBSUB
/// SHARDNUMSUB` on the master owning the channel's slot counts; requests wait for as many
/// answers as that count less one. Confined to the Socket.IO server's event loop.
public final class ShardedRedisAdapter: Adapter {
    public weak var delegate: AdapterDelegate?
    /// This node's id on the wire; a node ignores messages carrying its own uid.
    public let uid: String
    private let server: SocketIOServer
    private let redis: RedisShardedClient
    private let prefix: String
    private let requestsTimeout: TimeAmount
    private let logger: Logger
    private var namespaces: [String: ServedNamespace] = [:]
    private let requests: PendingRequests<PendingRequest>

    /// What this node keeps per namespace it serves.
    private final class ServedNamespace {
        let channels: RedisChannels
        let responseChannel: String
        /// Room channels subscribed in the dynamic mode.
        var roomChannels: Set<String> = []

        init(channels: RedisChannels, uid: String) {
            self.channels = channels
            self.responseChannel = "\(channels.broadcast)\(uid)#"
        }
    }

    /// Requests of ours waiting for answers.
    private enum PendingRequest {
        case fetch(FetchRequest)
        case serverSideEmit(ServerSideEmitRequest)
        case broadcastAck(BroadcastAckRequest)
    }

    public init(
        server: SocketIOServer,
        redis: RedisShardedClient,
        uid: String,
        prefix: String,
        requestsTimeout: TimeAmount,
        logger: Logger
    ) {
        self.server = server
        self.redis = redis
        self.uid = uid
        self.prefix = prefix
        self.requestsTimeout = requestsTimeout
        self.logger = logger
        self.requests = PendingRequests(eventLoop: server.eventLoop, defaultTimeout: requestsTimeout, logger: logger)
    }

    /// How many nodes serve `namespace`, this one included: the subscribers of its channel,
    /// counted by its shard's master as Node's `serverCount()` does.
    public func serverCount(namespace: String, completion: @escaping (Result<Int, AdapterError>) -> Void) {
        guard let state = namespaces[namespace] else { return completion(.success(1)) }
        guard redis.isConnected else { return completion(.failure(.unavailable("Redis is unreachable"))) }
        redis.shardSubscriberCount(of: state.channels.broadcast).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let count): completion(.success(count))
            case .failure(let error): completion(.failure(.unavailable("Redis is unreachable: \(error)")))
            }
        }
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
    }

    /// Unsubscribes every channel, as Node's `close()`, so the other nodes stop counting this
    /// one at once.
    public func close() {
        for state in namespaces.values {
            for channel in [state.channels.broadcast, state.responseChannel] + state.roomChannels.sorted() {
                redis.sunsubscribe(channel)
            }
            state.roomChannels = []
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
        requests.track(requestID, .broadcastAck(request), what: "broadcast with ack", timeout: timeout) {
            cancel()
            request.finish(timedOut: true)
        }
        request.onFinish = { [weak self] in self?.requests.finish(requestID) }
        let flags = RedisBroadcastFlags(volatile: options.volatile, timeout: timeout.nanoseconds / 1_000_000)
        let message = ClusterMessage.Body.broadcast(packet: packet, options: ClusterOptions(
            rooms: options.rooms.sorted(), except: options.except.sorted(), flags: flags
        ), requestId: requestID)
        publish(message, state)
        serverCount(namespace: options.namespace) { nodes in
            // Without Redis no other node can answer: the local answers are all there is.
            request.expect(nodes: (try? nodes.get()) ?? 1)
        }
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
        guard !options.local, let state = namespaces[options.namespace] else {
            return completion(.success(local))
        }
        serverCount(namespace: options.namespace) { [weak self] count in
            guard let self else { return }
            let nodes: Int
            switch count {
            case .failure(let error): return completion(.failure(error))
            case .success(let count): nodes = count
            }
            guard nodes > 1 else { return completion(.success(local)) }
            let requestID = Self.makeRequestID()
            let request = FetchRequest(namespace: options.namespace, expected: nodes, sockets: local, completion: completion)
            self.requests.track(requestID, .fetch(request), what: "fetchSockets") {
                request.completion(.failure(.timeout))
            }
            self.publish(.fetchSockets(options: self.clusterOptions(options), requestId: requestID), state)
        }
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
        serverCount(namespace: namespace) { [weak self] nodes in
            guard let self else { return }
            let others: Int
            switch nodes {
            case .failure(let error): return completion(.failure(error))
            case .success(let count): others = count - 1
            }
            guard others > 0 else {
                return completion(.success(ServerSideEmitResult(responses: [], expected: 0, timedOut: false)))
            }
            let requestID = Self.makeRequestID()
            let request = ServerSideEmitRequest(expected: others) { completion(.success($0)) }
            self.requests.track(requestID, .serverSideEmit(request), what: "serverSideEmit", timeout: ackTimeout) {
                request.finish(timedOut: true)
            }
            request.onFinish = { [weak self] in self?.requests.finish(requestID) }
            self.publish(.serverSideEmit(requestId: requestID, packet: packet), state)
        }
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
        if message.isResponse {
            return receivedResponse(message)
        }
        let namespace = state.channels.namespace
        switch message.body {
        case .initialHeartbeat, .heartbeat, .adapterClose:
            // Node's plain `ClusterAdapter` ignores these, and so does its sharded adapter.
            break
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
        guard let requestID = message.requestId, let pending = requests[requestID] else { return }
        switch (pending, message.body) {
        case (.fetch(let request), .fetchSocketsResponse(_, let sockets)):
            request.sockets += sockets.map {
                SocketDetails(id: $0.id, namespace: request.namespace, rooms: $0.rooms, handshake: $0.handshake, data: $0.data)
            }
            request.answered += 1
            if request.answered >= request.expected {
                requests.finish(requestID)
                request.completion(.success(request.sockets))
            }
        case (.serverSideEmit(let request), .serverSideEmitResponse(_, let packet)):
            request.add(packet ?? .null)
        case (.broadcastAck(let request), .broadcastClientCount(_, let count)):
            request.nodeReported(clientCount: count)
        case (.broadcastAck(let request), .broadcastAck(_, let packet)):
            request.add(.init(socketID: nil, args: packet.map { [$0] } ?? []))
        default:
            logger.debug("ignoring an answer of the wrong kind", metadata: ["requestId": "\(requestID)"])
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
    }

    private func respond(_ body: ClusterMessage.Body, to requester: String, _ state: ServedNamespace) {
        let message = ClusterMessage(uid: uid, namespace: state.channels.namespace, body: body)
        redis.spublish("\(state.channels.broadcast)\(requester)#", message.encode())
    }

    // MARK: Helpers

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
