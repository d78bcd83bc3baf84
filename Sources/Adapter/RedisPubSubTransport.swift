import Logging
import NIOCore
import Redis

/// Classic Redis pub/sub in the wire format of `@socket.io/redis-adapter` 8.x (`createAdapter`),
/// so Sidecast nodes, Node.js Socket.IO servers and Redis emitters share one cluster.
///
/// Per namespace (see ``RedisChannels``): broadcasts as msgpack ``RedisBroadcast`` on
/// `prefix#nsp#` or, for one room, `prefix#nsp#room#`, received through one `PSUBSCRIBE`;
/// requests as ``RedisRequest`` on `prefix-request#nsp#`, whose subscribers are the nodes;
/// answers as ``RedisResponse`` on the shared `prefix-response#nsp#` (Node 8's default), and
/// this node also listens on its own `prefix-response#nsp#uid#`. Confined to the event loop.
public final class RedisPubSubTransport: ClusterTransport {
    public weak var delegate: ClusterTransportDelegate?
    public var carriesAllRoomsRequests: Bool { true }
    /// Every node hears every broadcast through the pattern; rooms need no channel of their own.
    public var followsRooms: Bool { false }
    private let redis: RedisClient
    private let uid: String
    private let prefix: String
    private let logger: Logger
    private var served: [String: RedisChannels] = [:]

    public init(redis: RedisClient, uid: String, prefix: String, logger: Logger) {
        self.redis = redis
        self.uid = uid
        self.prefix = prefix
        self.logger = logger
    }

    private func channels(_ namespace: String) -> RedisChannels {
        served[namespace] ?? RedisChannels(prefix: prefix, namespace: namespace)
    }

    public func serve(namespace: String) {
        let channels = RedisChannels(prefix: prefix, namespace: namespace)
        served[namespace] = channels
        redis.psubscribe(channels.broadcastPattern) { [weak self] _, channel, message in
            self?.received(broadcast: message, on: channel, channels)
        }
        redis.subscribe(channels.request) { [weak self] _, message in
            self?.received(request: message, channels)
        }
        for channel in [channels.response, channels.response(uid: uid)] {
            redis.subscribe(channel) { [weak self] _, message in
                self?.received(response: message)
            }
        }
    }

    public func close() {
        for channels in served.values {
            redis.punsubscribe(channels.broadcastPattern)
            for channel in channels.subscriptions(uid: uid) { redis.unsubscribe(channel) }
        }
        served = [:]
    }

    public func roomCreated(_ room: String, isPrivate: Bool, namespace: String) {}

    public func roomDeleted(_ room: String, namespace: String) {}

    /// The subscribers of the request channel, as Node counts (summed over every node of a
    /// Redis Cluster).
    public func serverCount(namespace: String, completion: @escaping (Result<Int, AdapterError>) -> Void) {
        guard redis.isConnected else { return completion(.failure(.unavailable("Redis is unreachable"))) }
        redis.subscriberCount(of: channels(namespace).request).assumeIsolated().whenComplete { result in
            completion(result.mapError { .unavailable("Redis is unreachable: \($0)") })
        }
    }

    // MARK: Writing

    public func publish(_ request: ClusterRequest, namespace: String) {
        let channels = channels(namespace)
        switch request {
        case .broadcast(let packet, let options, nil):
            let message = RedisBroadcast(uid: uid, packet: packet, rooms: options.rooms, except: options.except, flags: options.flags)
            redis.publish(channels.broadcastChannel(rooms: message.rooms), message.encode())
        case .broadcast(let packet, let options, let requestID?):
            let message = RedisBroadcast(uid: uid, packet: packet, rooms: options.rooms, except: options.except, flags: options.flags)
            redis.publish(channels.request, RedisRequest.broadcastWithAck(requestId: requestID, broadcast: message).encode())
        case .socketsJoin(let options, let rooms):
            redis.publish(channels.request, RedisRequest.remoteJoin(uid: uid, selector: Self.selector(options), rooms: rooms).encode())
        case .socketsLeave(let options, let rooms):
            redis.publish(channels.request, RedisRequest.remoteLeave(uid: uid, selector: Self.selector(options), rooms: rooms).encode())
        case .disconnectSockets(let options, let close):
            redis.publish(channels.request, RedisRequest.remoteDisconnect(uid: uid, selector: Self.selector(options), close: close).encode())
        case .fetchSockets(let options, let requestID):
            redis.publish(channels.request, RedisRequest.remoteFetch(uid: uid, requestId: requestID, selector: Self.selector(options)).encode())
        case .allRooms(let requestID):
            redis.publish(channels.request, RedisRequest.allRooms(uid: uid, requestId: requestID).encode())
        case .serverSideEmit(let requestID, let packet):
            redis.publish(channels.request, RedisRequest.serverSideEmit(uid: uid, requestId: requestID, data: packet).encode())
        }
    }

    /// Node 8 answers on the shared response channel unless `publishOnSpecificResponseChannel`
    /// is set, which Sidecast leaves off, so any node's answers reach a Node requester.
    public func publishResponse(_ response: ClusterResponse, to requester: String?, namespace: String) {
        let message: RedisResponse
        switch response {
        case .fetchSockets(let id, let sockets): message = .fetchSockets(requestId: id, sockets: sockets)
        case .allRooms(let id, let rooms): message = .allRooms(requestId: id, rooms: rooms)
        case .serverSideEmit(let id, let packet): message = .serverSideEmit(requestId: id, data: packet)
        case .broadcastClientCount(let id, let count): message = .broadcastClientCount(requestId: id, clientCount: count)
        case .broadcastAck(let id, let packet): message = .broadcastAck(requestId: id, packet: packet)
        }
        redis.publish(channels(namespace).response, message.encode())
    }

    // MARK: Reading

    private func received(broadcast message: ByteBuffer, on channel: String, _ channels: RedisChannels) {
        let namespace = channels.namespace
        // A one-room channel names its room: a node without that room drops it undecoded.
        if case .room(let room)? = channels.broadcastTarget(ofChannel: channel),
            delegate?.transport(holdsRoom: room, namespace: namespace) != true
        {
            return
        }
        do {
            guard let broadcast = try RedisBroadcast.decode(message, ignoringUID: uid, namespace: namespace) else { return }
            let options = ClusterOptions(rooms: broadcast.rooms, except: broadcast.except, flags: broadcast.flags)
            delegate?.transport(didReceive: .broadcast(packet: broadcast.packet, options: options, requestId: nil), from: broadcast.uid, namespace: namespace)
        } catch {
            logger.warning("skipping a malformed broadcast from Redis", metadata: ["channel": "\(channel)", "error": "\(error)"])
        }
    }

    private func received(request message: ByteBuffer, _ channels: RedisChannels) {
        let request: RedisRequest
        do {
            request = try RedisRequest.decode(message)
        } catch {
            return logger.warning("skipping a malformed request from Redis", metadata: ["channel": "\(channels.request)", "error": "\(error)"])
        }
        if request.uid == uid { return }
        let cluster: ClusterRequest
        switch request {
        case .allRooms(_, let id):
            cluster = .allRooms(requestId: id)
        case .remoteJoin(_, let selector, let rooms):
            cluster = .socketsJoin(options: ClusterOptions(rooms: selector.rooms, except: selector.except), rooms: rooms)
        case .remoteLeave(_, let selector, let rooms):
            cluster = .socketsLeave(options: ClusterOptions(rooms: selector.rooms, except: selector.except), rooms: rooms)
        case .remoteDisconnect(_, let selector, let close):
            cluster = .disconnectSockets(options: ClusterOptions(rooms: selector.rooms, except: selector.except), close: close)
        case .remoteFetch(_, let id, let selector):
            cluster = .fetchSockets(options: ClusterOptions(rooms: selector.rooms, except: selector.except), requestId: id)
        case .serverSideEmit(_, let id, let data):
            cluster = .serverSideEmit(requestId: id, packet: data)
        case .broadcastWithAck(let id, let broadcast):
            let options = ClusterOptions(rooms: broadcast.rooms, except: broadcast.except, flags: broadcast.flags)
            cluster = .broadcast(packet: broadcast.packet, options: options, requestId: id)
        }
        delegate?.transport(didReceive: cluster, from: request.uid, namespace: channels.namespace)
    }

    private func received(response message: ByteBuffer) {
        let response: RedisResponse
        do {
            response = try RedisResponse.decode(message)
        } catch {
            return logger.debug("skipping a malformed response from Redis", metadata: ["error": "\(error)"])
        }
        let cluster: ClusterResponse
        switch response {
        case .fetchSockets(let id, let sockets): cluster = .fetchSockets(requestId: id, sockets: sockets)
        case .allRooms(let id, let rooms): cluster = .allRooms(requestId: id, rooms: rooms)
        case .serverSideEmit(let id, let data): cluster = .serverSideEmit(requestId: id, packet: data)
        case .broadcastClientCount(let id, let count): cluster = .broadcastClientCount(requestId: id, clientCount: count)
        case .broadcastAck(let id, let packet): cluster = .broadcastAck(requestId: id, packet: packet)
        }
        delegate?.transport(didReceive: cluster)
    }

    private static func selector(_ options: ClusterOptions) -> RedisSelector {
        RedisSelector(rooms: options.rooms, except: options.except)
    }
}
