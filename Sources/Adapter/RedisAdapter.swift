import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Redis
import SidecastJSON
import SocketIO

/// The cluster adapter: fans operations out to every node over Redis pub/sub, in the wire
/// format of `@socket.io/redis-adapter` 8.x, so Sidecast nodes, Node.js Socket.IO servers and
/// Redis emitters share one cluster.
///
/// Local work never waits for Redis: a broadcast is delivered to this node's clients at once
/// and published for the others (queued in the client's outbox while Redis is away). Requests
/// that need answers from other nodes fail with a clear error when Redis is unreachable.
/// Confined to the Socket.IO server's event loop.
public final class RedisAdapter: Adapter {
    public weak var delegate: AdapterDelegate?
    /// This node's id on the wire; a node ignores messages carrying its own uid.
    public let uid: String
    private let server: SocketIOServer
    private let redis: RedisClient
    private let prefix: String
    private let requestsTimeout: TimeAmount
    private let logger: Logger
    private var served: Set<String> = []
    /// Requests of ours waiting for other nodes' answers, by request id, with their timeouts.
    private let requests: PendingRequests<PendingRequest>

    private enum PendingRequest {
        case fetch(FetchRequest)
        case allRooms(AllRoomsRequest)
        case serverSideEmit(ServerSideEmitRequest)
        case broadcastAck(BroadcastAckRequest)
    }

    public init(
        server: SocketIOServer,
        redis: RedisClient,
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

    private func channels(_ namespace: String) -> RedisChannels {
        RedisChannels(prefix: prefix, namespace: namespace)
    }

    public func serve(namespace: String) {
        guard served.insert(namespace).inserted else { return }
        let channels = channels(namespace)
        redis.psubscribe(channels.broadcastPattern) { [weak self] _, channel, message in
            self?.received(broadcast: message, on: channel, channels: channels)
        }
        redis.subscribe(channels.request) { [weak self] _, message in
            self?.received(request: message, channels: channels)
        }
        for channel in [channels.response, channels.response(uid: uid)] {
            redis.subscribe(channel) { [weak self] _, message in
                self?.received(response: message)
            }
        }
    }

    // MARK: Operations of this node

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        if !options.local {
            let message = RedisBroadcast(
                uid: uid,
                packet: packet,
                rooms: options.rooms.sorted(),
                except: options.except.sorted(),
                flags: RedisBroadcastFlags(volatile: options.volatile)
            )
            redis.publish(channels(options.namespace).broadcastChannel(rooms: message.rooms), message.encode())
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
        guard !options.local else {
            request.expect(nodes: 1)
            return
        }
        let requestID = Self.makeRequestID()
        requests.track(requestID, .broadcastAck(request), what: "broadcast with ack", timeout: timeout) {
            cancel()
            request.finish(timedOut: true)
        }
        request.onFinish = { [weak self] in self?.requests.finish(requestID) }
        let message = RedisBroadcast(
            uid: uid,
            packet: packet,
            rooms: options.rooms.sorted(),
            except: options.except.sorted(),
            flags: RedisBroadcastFlags(volatile: options.volatile, timeout: timeout.nanoseconds / 1_000_000)
        )
        let channels = channels(options.namespace)
        redis.publish(channels.request, RedisRequest.broadcastWithAck(requestId: requestID, broadcast: message).encode())
        serverCount(channels) { nodes in
            // Without Redis no other node can answer: the local answers are all there is.
            request.expect(nodes: (try? nodes.get()) ?? 1)
        }
    }

    public func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.addSockets(options, rooms: rooms)
        guard !options.local else { return }
        publishRequest(.remoteJoin(uid: uid, selector: selector(options), rooms: rooms), namespace: options.namespace)
    }

    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.removeSockets(options, rooms: rooms)
        guard !options.local else { return }
        publishRequest(.remoteLeave(uid: uid, selector: selector(options), rooms: rooms), namespace: options.namespace)
    }

    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        server.disconnectSockets(options, close: close)
        guard !options.local else { return }
        publishRequest(.remoteDisconnect(uid: uid, selector: selector(options), close: close), namespace: options.namespace)
    }

    public func fetchSockets(
        _ options: BroadcastOptions,
        completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void
    ) {
        let local = server.fetchSockets(options).map(SocketDetails.init)
        guard !options.local else { return completion(.success(local)) }
        let channels = channels(options.namespace)
        askOtherNodes(channels, failure: { completion(.failure($0)) }, alone: { completion(.success(local)) }) { nodes in
            let requestID = Self.makeRequestID()
            let request = FetchRequest(namespace: options.namespace, expected: nodes, sockets: local, completion: completion)
            self.requests.track(requestID, .fetch(request), what: "fetchSockets") { request.completion(.failure(.timeout)) }
            self.redis.publish(
                channels.request,
                RedisRequest.remoteFetch(uid: self.uid, requestId: requestID, selector: self.selector(options)).encode()
            )
        }
    }

    public func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        let local = server.allRooms(namespace: namespace)
        let channels = channels(namespace)
        askOtherNodes(channels, failure: { completion(.failure($0)) }, alone: { completion(.success(local)) }) { nodes in
            let requestID = Self.makeRequestID()
            let request = AllRoomsRequest(expected: nodes, rooms: local, completion: completion)
            self.requests.track(requestID, .allRooms(request), what: "allRooms") { request.completion(.failure(.timeout)) }
            self.redis.publish(channels.request, RedisRequest.allRooms(uid: self.uid, requestId: requestID).encode())
        }
    }

    public func serverSideEmit(
        namespace: String,
        event: String,
        args: [JSONValue],
        ackTimeout: TimeAmount?,
        completion: @escaping (Result<ServerSideEmitResult, AdapterError>) -> Void
    ) {
        let channels = channels(namespace)
        let data: [JSONValue] = [.string(event)] + args
        guard ackTimeout != nil else {
            redis.publish(channels.request, RedisRequest.serverSideEmit(uid: uid, requestId: nil, data: data).encode())
            return completion(.success(ServerSideEmitResult(responses: [], expected: 0, timedOut: false)))
        }
        serverCount(channels) { [weak self] nodes in
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
            self.requests.track(requestID, .serverSideEmit(request), what: "serverSideEmit") { request.finish(timedOut: true) }
            request.onFinish = { [weak self] in self?.requests.finish(requestID) }
            self.redis.publish(channels.request, RedisRequest.serverSideEmit(uid: self.uid, requestId: requestID, data: data).encode())
        }
    }

    // MARK: What other nodes send

    private func received(broadcast message: ByteBuffer, on channel: String, channels: RedisChannels) {
        if case .room(let room)? = channels.broadcastTarget(ofChannel: channel),
            server.namespaces[channels.namespace]?.rooms[room] == nil
        {
            return
        }
        do {
            guard let broadcast = try RedisBroadcast.decode(message, ignoringUID: uid, namespace: channels.namespace) else {
                return
            }
            let options = BroadcastOptions(
                namespace: channels.namespace,
                rooms: Set(broadcast.rooms),
                except: Set(broadcast.except),
                volatile: broadcast.flags.volatile,
                local: true
            )
            server.broadcast(broadcast.packet, options: options)
        } catch {
            logger.warning("skipping a malformed broadcast from Redis", metadata: ["channel": "\(channel)", "error": "\(error)"])
        }
    }

    private func received(request message: ByteBuffer, channels: RedisChannels) {
        let request: RedisRequest
        do {
            request = try RedisRequest.decode(message)
        } catch {
            return logger.warning("skipping a malformed request from Redis", metadata: ["channel": "\(channels.request)", "error": "\(error)"])
        }
        if request.uid == uid { return }
        let namespace = channels.namespace
        switch request {
        case .allRooms(_, let requestID):
            publish(.allRooms(requestId: requestID, rooms: server.allRooms(namespace: namespace).sorted()), answering: request, channels)
        case .remoteJoin(_, let selector, let rooms):
            server.addSockets(options(namespace, selector), rooms: rooms)
        case .remoteLeave(_, let selector, let rooms):
            server.removeSockets(options(namespace, selector), rooms: rooms)
        case .remoteDisconnect(_, let selector, let close):
            server.disconnectSockets(options(namespace, selector), close: close)
        case .remoteFetch(_, let requestID, let selector):
            let sockets = server.fetchSockets(options(namespace, selector)).map {
                RedisSocketDetails(id: $0.id, handshake: Self.nodeHandshake($0), rooms: [$0.id] + $0.rooms.subtracting([$0.id]).sorted(), data: $0.data)
            }
            publish(.fetchSockets(requestId: requestID, sockets: sockets), answering: request, channels)
        case .serverSideEmit(let sender, let requestID, let data):
            guard case .string(let event)? = data.first else {
                return logger.warning("skipping a server-side emit without an event name", metadata: ["namespace": "\(namespace)"])
            }
            var reply: ((JSONValue) -> Void)?
            if let requestID {
                reply = { [weak self] answer in
                    self?.publish(.serverSideEmit(requestId: requestID, data: answer), answering: request, channels)
                }
            }
            delegate?.adapter(
                didReceiveServerSideEmit: event,
                args: data.dropFirst().map(\.revivingNodeBuffers),
                namespace: namespace,
                from: sender,
                reply: reply
            )
        case .broadcastWithAck(let requestID, let broadcast):
            let options = BroadcastOptions(
                namespace: namespace,
                rooms: Set(broadcast.rooms),
                except: Set(broadcast.except),
                volatile: broadcast.flags.volatile,
                local: true
            )
            let (count, cancel) = server.broadcastWithAck(broadcast.packet, options: options) { [weak self] _, args in
                self?.publish(.broadcastAck(requestId: requestID, packet: args.first), answering: request, channels)
            }
            publish(.broadcastClientCount(requestId: requestID, clientCount: count), answering: request, channels)
            // Late answers are useless to the requester once its own timeout passed.
            let timeout = broadcast.flags.timeout.map { TimeAmount.milliseconds($0) } ?? requestsTimeout
            server.eventLoop.assumeIsolated().scheduleTask(in: timeout) { cancel() }
        }
    }

    private func received(response message: ByteBuffer) {
        let response: RedisResponse
        do {
            response = try RedisResponse.decode(message)
        } catch {
            return logger.debug("skipping a malformed response from Redis", metadata: ["error": "\(error)"])
        }
        guard let pending = requests[response.requestId] else { return }
        switch (pending, response) {
        case (.fetch(let request), .fetchSockets(_, let sockets)):
            request.sockets += sockets.map {
                SocketDetails(id: $0.id, namespace: request.namespace, rooms: $0.rooms, handshake: $0.handshake, data: $0.data)
            }
            request.answered += 1
            if request.answered >= request.expected {
                requests.finish(response.requestId)
                request.completion(.success(request.sockets))
            }
        case (.allRooms(let request), .allRooms(_, let rooms)):
            request.rooms.formUnion(rooms)
            request.answered += 1
            if request.answered >= request.expected {
                requests.finish(response.requestId)
                request.completion(.success(request.rooms))
            }
        case (.serverSideEmit(let request), .serverSideEmit(_, let data)):
            request.add(data?.revivingNodeBuffers ?? .null)
        case (.broadcastAck(let request), .broadcastClientCount(_, let count)):
            request.nodeReported(clientCount: count)
        case (.broadcastAck(let request), .broadcastAck(_, let packet)):
            request.add(.init(socketID: nil, args: packet.map { [$0] } ?? []))
        default:
            logger.debug("ignoring an answer of the wrong kind", metadata: ["requestId": "\(response.requestId)"])
        }
    }

    // MARK: Helpers

    /// Runs `ask` with the number of nodes serving the namespace when other nodes exist,
    /// `alone` when this node is the only one, `failure` when Redis can't tell.
    private func askOtherNodes(
        _ channels: RedisChannels,
        failure: @escaping (AdapterError) -> Void,
        alone: @escaping () -> Void,
        ask: @escaping (Int) -> Void
    ) {
        serverCount(channels) { nodes in
            switch nodes {
            case .failure(let error): failure(error)
            case .success(let nodes) where nodes <= 1: alone()
            case .success(let nodes): ask(nodes)
            }
        }
    }

    /// How many nodes serve the namespace: subscribers of its request channel, as Node counts
    /// (summed over every node of a Redis Cluster).
    private func serverCount(_ channels: RedisChannels, _ completion: @escaping (Result<Int, AdapterError>) -> Void) {
        guard redis.isConnected else {
            return completion(.failure(.unavailable("Redis is unreachable")))
        }
        redis.subscriberCount(of: channels.request).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let count):
                completion(.success(count))
            case .failure(let error):
                completion(.failure(.unavailable("Redis is unreachable: \(error)")))
            }
        }
    }

    private func publishRequest(_ request: RedisRequest, namespace: String) {
        redis.publish(channels(namespace).request, request.encode())
    }

    private func publish(_ response: RedisResponse, answering request: RedisRequest, _ channels: RedisChannels) {
        redis.publish(response.channel(answering: request, in: channels), response.encode())
    }

    private func selector(_ options: BroadcastOptions) -> RedisSelector {
        RedisSelector(rooms: options.rooms.sorted(), except: options.except.sorted())
    }

    private func options(_ namespace: String, _ selector: RedisSelector) -> BroadcastOptions {
        BroadcastOptions(namespace: namespace, rooms: Set(selector.rooms), except: Set(selector.except), local: true)
    }

    /// The handshake as a Node server describes it, so Node nodes can read our fetch answers
    /// (shared with the sharded adapter).
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

    /// Six random characters, as the Node adapter's request ids.
    static func makeRequestID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        var generator = SystemRandomNumberGenerator()
        return String(decoding: (0..<6).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] }, as: UTF8.self)
    }
}

extension JSONValue {
    /// Server-side emits travel as JSON, where Node writes a Buffer as
    /// `{"type":"Buffer","data":[bytes]}`; this turns such objects back into binary values so
    /// backends get them as `$binary`, like binary from clients.
    fileprivate var revivingNodeBuffers: JSONValue {
        switch self {
        case .array(let elements):
            return .array(elements.map(\.revivingNodeBuffers))
        case .object(let members):
            if members.count == 2, members["type"] == "Buffer", case .array(let bytes)? = members["data"] {
                var buffer = ByteBuffer()
                buffer.reserveCapacity(bytes.count)
                for byte in bytes {
                    guard let value = byte.intValue, (0...255).contains(value) else { return self }
                    buffer.writeInteger(UInt8(value))
                }
                return .binary(buffer)
            }
            return .object(members.mapValues(\.revivingNodeBuffers))
        default:
            return self
        }
    }
}
