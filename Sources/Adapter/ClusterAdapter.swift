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
/// once and published for the others (queued while Redis is away). Requests that need answers
/// from other nodes fail with a clear error when the transport can't count the nodes.
/// Confined to the Socket.IO server's event loop.
public final class ClusterAdapter: Adapter, ClusterTransportDelegate {
    public weak var delegate: AdapterDelegate?
    /// This node's id on the wire; a node ignores messages carrying its own uid.
    public let uid: String
    private let server: SocketIOServer
    private let transport: ClusterTransport
    /// How long requests wait for other nodes when the caller gives no timeout of its own.
    private let requestsTimeout: TimeAmount
    private let logger: Logger
    private var served: Set<String> = []
    private let requests: PendingRequests

    public init(server: SocketIOServer, transport: ClusterTransport, uid: String, requestsTimeout: TimeAmount, logger: Logger) {
        self.server = server
        self.transport = transport
        self.uid = uid
        self.requestsTimeout = requestsTimeout
        self.logger = logger
        self.requests = PendingRequests(eventLoop: server.eventLoop, logger: logger)
        transport.delegate = self
    }

    /// Requests of this node still waiting for answers.
    var pendingRequestCount: Int { requests.count }

    public func serve(namespace name: String) {
        guard served.insert(name).inserted else { return }
        transport.serve(namespace: name)
        guard transport.followsRooms else { return }
        let namespace = server.namespace(named: name)
        namespace.onRoomChange = { [weak self, weak namespace] room, exists in
            guard let self, let namespace else { return }
            self.roomChanged(room, exists: exists, in: namespace)
        }
        for room in namespace.rooms.keys { roomChanged(room, exists: true, in: namespace) }
    }

    public func close() {
        transport.close()
    }

    private func roomChanged(_ room: String, exists: Bool, in namespace: Namespace) {
        if exists {
            transport.roomCreated(room, isPrivate: namespace.sockets[room] != nil, namespace: namespace.name)
        } else {
            transport.roomDeleted(room, namespace: namespace.name)
        }
    }

    // MARK: Operations of this node

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        if !options.local {
            transport.publish(.broadcast(packet: packet, options: ClusterOptions(options), requestId: nil), namespace: options.namespace)
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
        request.startLocally(on: server, packet, options: options)
        guard !options.local else { return request.expect(otherNodes: 0) }
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
        server.addSockets(options, rooms: rooms)
        guard !options.local else { return }
        transport.publish(.socketsJoin(options: ClusterOptions(options), rooms: rooms), namespace: options.namespace)
    }

    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.removeSockets(options, rooms: rooms)
        guard !options.local else { return }
        transport.publish(.socketsLeave(options: ClusterOptions(options), rooms: rooms), namespace: options.namespace)
    }

    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        server.disconnectSockets(options, close: close)
        guard !options.local else { return }
        transport.publish(.disconnectSockets(options: ClusterOptions(options), close: close), namespace: options.namespace)
    }

    public func fetchSockets(_ options: BroadcastOptions, completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void) {
        let local = server.fetchSockets(options).map(SocketDetails.init)
        guard !options.local else { return completion(.success(local)) }
        askOtherNodes(options.namespace, failure: { completion(.failure($0)) }, alone: { completion(.success(local)) }) { others in
            let requestID = Self.makeRequestID()
            let request = FetchRequest(namespace: options.namespace, otherNodes: others, local: local, completion: completion)
            self.requests.track(requestID, request, what: "fetchSockets", timeout: self.requestsTimeout)
            self.transport.publish(.fetchSockets(options: ClusterOptions(options), requestId: requestID), namespace: options.namespace)
        }
    }

    public func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        guard transport.carriesAllRoomsRequests else {
            // Every room has a member, so the rooms of all sockets of all nodes are all the rooms.
            return fetchSockets(BroadcastOptions(namespace: namespace)) { result in
                completion(result.map { sockets in Set(sockets.flatMap(\.rooms)) })
            }
        }
        let local = server.allRooms(namespace: namespace)
        askOtherNodes(namespace, failure: { completion(.failure($0)) }, alone: { completion(.success(local)) }) { others in
            let requestID = Self.makeRequestID()
            let request = AllRoomsRequest(otherNodes: others, local: local, completion: completion)
            self.requests.track(requestID, request, what: "allRooms", timeout: self.requestsTimeout)
            self.transport.publish(.allRooms(requestId: requestID), namespace: namespace)
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
        server.namespaces[namespace]?.rooms[room] != nil
    }

    public func transport(didReceive response: ClusterResponse) {
        requests.received(response)
    }

    public func transport(didReceive request: ClusterRequest, from sender: String?, namespace: String) {
        if sender == uid { return }
        switch request {
        case .broadcast(let packet, let options, nil):
            server.broadcast(packet, options: options.local(namespace))
        case .broadcast(let packet, let options, let requestID?):
            let (count, cancel) = server.broadcastWithAck(packet, options: options.local(namespace)) { [weak self] _, args in
                self?.transport.publishResponse(.broadcastAck(requestId: requestID, packet: args.first), to: sender, namespace: namespace)
            }
            transport.publishResponse(.broadcastClientCount(requestId: requestID, clientCount: count), to: sender, namespace: namespace)
            // Late answers are useless to the requester once its own timeout passed.
            let timeout = options.flags.timeout.map { TimeAmount.milliseconds($0) } ?? requestsTimeout
            server.eventLoop.assumeIsolated().scheduleTask(in: timeout) { cancel() }
        case .socketsJoin(let options, let rooms):
            server.addSockets(options.local(namespace), rooms: rooms)
        case .socketsLeave(let options, let rooms):
            server.removeSockets(options.local(namespace), rooms: rooms)
        case .disconnectSockets(let options, let close):
            server.disconnectSockets(options.local(namespace), close: close)
        case .fetchSockets(let options, let requestID):
            let sockets = server.fetchSockets(options.local(namespace)).map {
                RedisSocketDetails(id: $0.id, handshake: Self.nodeHandshake($0), rooms: [$0.id] + $0.rooms.subtracting([$0.id]).sorted(), data: $0.data)
            }
            transport.publishResponse(.fetchSockets(requestId: requestID, sockets: sockets), to: sender, namespace: namespace)
        case .allRooms(let requestID):
            let rooms = server.allRooms(namespace: namespace).sorted()
            transport.publishResponse(.allRooms(requestId: requestID, rooms: rooms), to: sender, namespace: namespace)
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
