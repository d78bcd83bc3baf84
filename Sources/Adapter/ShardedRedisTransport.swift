import Logging
import NIOCore
import Redis

/// Which channels a sharded node subscribes, as `subscriptionMode` of `createShardedAdapter`
/// (`lib/sharded-adapter.ts` of `@socket.io/redis-adapter` 8.3).
public enum ShardedSubscriptionMode: String, Sendable, Hashable, CaseIterable {
    /// Two channels per namespace (`prefix#nsp#` and this node's response channel); every
    /// broadcast goes on the namespace channel. Suits dynamic namespaces.
    case `static`
    /// Also one channel per public room while it has a member here; a broadcast to one room
    /// that does not look like a socket id (Node's rule: 20 characters) goes on the room's
    /// channel, so only the nodes holding the room hear it.
    case dynamic
    /// Like `dynamic`, and every socket's own-id room gets a channel too, so an emit to one
    /// socket reaches only its node.
    case dynamicPrivate = "dynamic-private"
}

/// Redis 7 sharded pub/sub in the wire format of `@socket.io/redis-adapter`'s
/// `createShardedAdapter` (socket.io-adapter's `ClusterAdapter` messages, see
/// ``ClusterMessage``), on a Redis Cluster or one Redis 7 server.
///
/// Channels, per namespace: `prefix#nsp#` for every node, `prefix#nsp#uid#` for answers to this
/// node, and with the dynamic modes `prefix#nsp#room#` per room (see
/// ``ShardedSubscriptionMode``). The nodes serving a namespace are the subscribers of its
/// channel, which `PUBSUB SHARDNUMSUB` on the master owning the channel's slot counts.
///
/// Like Node's, it extends the plain `ClusterAdapter`: no heartbeats and no `ADAPTER_CLOSE`.
/// Confined to the Socket.IO server's event loop.
public final class ShardedRedisTransport: ClusterTransport {
    public weak var delegate: ClusterTransportDelegate?
    /// socket.io-adapter's `ClusterAdapter` has no `allRooms` request.
    public var carriesAllRoomsRequests: Bool { false }
    public var followsRooms: Bool { mode != .static }
    private let redis: RedisShardedClient
    private let uid: String
    private let prefix: String
    private let mode: ShardedSubscriptionMode
    private let logger: Logger
    private var namespaces: [String: ServedNamespace] = [:]

    /// What this node keeps per namespace it serves.
    private final class ServedNamespace {
        let channels: RedisChannels
        let responseChannel: String
        /// Room channels subscribed in the dynamic modes.
        var roomChannels: Set<String> = []

        init(channels: RedisChannels, uid: String) {
            self.channels = channels
            self.responseChannel = "\(channels.broadcast)\(uid)#"
        }
    }

    public init(redis: RedisShardedClient, uid: String, prefix: String, mode: ShardedSubscriptionMode, logger: Logger) {
        self.redis = redis
        self.uid = uid
        self.prefix = prefix
        self.mode = mode
        self.logger = logger
    }

    /// Node's `looksLikeASocketId`: a string of exactly 20 UTF-16 code units.
    public static func looksLikeASocketID(_ room: String) -> Bool {
        room.utf16.count == 20
    }

    public func serve(namespace: String) {
        let state = ServedNamespace(channels: RedisChannels(prefix: prefix, namespace: namespace), uid: uid)
        namespaces[namespace] = state
        for channel in [state.channels.broadcast, state.responseChannel] {
            subscribe(channel, state)
        }
    }

    /// Unsubscribes every channel, as Node's `close()`.
    public func close() {
        for state in namespaces.values {
            for channel in [state.channels.broadcast, state.responseChannel] + state.roomChannels.sorted() {
                redis.sunsubscribe(channel)
            }
            state.roomChannels = []
        }
        namespaces = [:]
    }

    /// Node's `shouldUseASeparateNamespace`: public rooms in `dynamic`, every room in
    /// `dynamic-private`.
    public func roomCreated(_ room: String, isPrivate: Bool, namespace: String) {
        guard let state = namespaces[namespace], mode == .dynamicPrivate || (mode == .dynamic && !isPrivate) else { return }
        let channel = state.channels.room(room)
        guard state.roomChannels.insert(channel).inserted else { return }
        subscribe(channel, state)
    }

    public func roomDeleted(_ room: String, namespace: String) {
        guard let state = namespaces[namespace], state.roomChannels.remove(state.channels.room(room)) != nil else { return }
        redis.sunsubscribe(state.channels.room(room))
    }

    /// Node's `serverCount()`: `PUBSUB SHARDNUMSUB` of the namespace channel.
    public func serverCount(namespace: String, completion: @escaping (Result<Int, AdapterError>) -> Void) {
        guard let state = namespaces[namespace] else { return completion(.success(1)) }
        guard redis.isConnected else { return completion(.failure(.unavailable("Redis is unreachable"))) }
        redis.shardSubscriberCount(of: state.channels.broadcast).assumeIsolated().whenComplete { result in
            completion(result.mapError { .unavailable("Redis is unreachable: \($0)") })
        }
    }

    // MARK: Writing

    public func publish(_ request: ClusterRequest, namespace: String) {
        guard let state = namespaces[namespace] else { return }
        guard let body = ClusterMessage.Body(request) else {
            // The adapter asks `carriesAllRoomsRequests` first; the format has no such message.
            return logger.debug("the sharded format has no allRooms request", metadata: ["namespace": "\(namespace)"])
        }
        let message = ClusterMessage(uid: uid, namespace: namespace, body: body)
        redis.spublish(Self.channel(for: body, mode: mode, state.channels), message.encode())
    }

    public func publishResponse(_ response: ClusterResponse, to requester: String?, namespace: String) {
        guard let state = namespaces[namespace], let requester, let body = ClusterMessage.Body(response) else { return }
        let message = ClusterMessage(uid: uid, namespace: namespace, body: body)
        redis.spublish("\(state.channels.broadcast)\(requester)#", message.encode())
    }

    /// Node's `computeChannel`: a broadcast without acks to exactly one room goes on that room's
    /// channel in `dynamic` (unless the room looks like a socket id) and in `dynamic-private`;
    /// everything else, and a broadcast with acks (every node must count itself in), on the
    /// namespace's.
    static func channel(for body: ClusterMessage.Body, mode: ShardedSubscriptionMode, _ channels: RedisChannels) -> String {
        guard case .broadcast(_, let options, nil) = body, options.rooms.count == 1 else { return channels.broadcast }
        switch mode {
        case .static:
            return channels.broadcast
        case .dynamic:
            return looksLikeASocketID(options.rooms[0]) ? channels.broadcast : channels.room(options.rooms[0])
        case .dynamicPrivate:
            return channels.room(options.rooms[0])
        }
    }

    // MARK: Reading

    private func subscribe(_ channel: String, _ state: ServedNamespace) {
        redis.ssubscribe(channel) { [weak self] channel, message in
            self?.received(message, on: channel, state)
        }
    }

    /// Node's `onRawMessage`: what arrives on the response channel is an answer, anything else
    /// a message (whose answer kinds socket.io-adapter's `onMessage` hands on as answers too).
    private func received(_ bytes: ByteBuffer, on channel: String, _ state: ServedNamespace) {
        let message: ClusterMessage
        do {
            message = try ClusterMessage.decode(bytes)
        } catch {
            return logger.warning("skipping a malformed cluster message from Redis", metadata: ["channel": "\(channel)", "error": "\(error)"])
        }
        guard message.uid != uid else { return }
        let namespace = state.channels.namespace
        let isResponseChannel = channel == state.responseChannel
        let request: ClusterRequest
        switch message.body.inbound {
        case .initialHeartbeat, .heartbeat, .adapterClose:
            // Node's plain `ClusterAdapter` ignores these, and so does its sharded adapter.
            return
        case .response(let response):
            return delegate?.transport(didReceive: response) ?? ()
        case .request(let received):
            request = received
        }
        // Node's `onResponse` ignores requests; its `onMessage`, another namespace's messages.
        guard !isResponseChannel, message.namespace == namespace else { return }
        delegate?.transport(didReceive: request, from: message.uid, namespace: namespace)
    }
}
