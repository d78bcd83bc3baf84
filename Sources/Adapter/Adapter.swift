import NIOCore
import SidecastJSON
import SocketIO

/// Decides which nodes an operation reaches; the Socket.IO server decides which local sockets.
///
/// The bridge calls only this protocol, so a single node (`LocalAdapter`) and a cluster
/// (the Redis adapter) are interchangeable. Every call and every completion happens on the
/// Socket.IO server's event loop.
public protocol Adapter: AnyObject {
    /// Learns what other nodes send that is not for clients (server-side emits).
    var delegate: AdapterDelegate? { get set }
    /// Starts listening for a namespace's cluster traffic; the bridge calls it for every
    /// namespace that comes to exist. Calling it again for the same namespace does nothing.
    func serve(namespace: String)
    /// Stops listening to the cluster at shutdown, so the other nodes stop counting this one
    /// at once; what was published stays queued for the flush.
    func close()
    func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions)
    /// Emits with one ack id to every matching socket on every node and collects the answers
    /// until all have answered or `timeout` passes.
    func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        completion: @escaping (BroadcastAckResult) -> Void
    )
    func addSockets(_ options: BroadcastOptions, rooms: [String])
    func removeSockets(_ options: BroadcastOptions, rooms: [String])
    func disconnectSockets(_ options: BroadcastOptions, close: Bool)
    func fetchSockets(_ options: BroadcastOptions, completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void)
    func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void)
    /// Sends an event to the servers (not the clients) of every other node. With `ackTimeout`,
    /// collects one answer per node until all answered or the timeout passes.
    func serverSideEmit(
        namespace: String,
        event: String,
        args: [JSONValue],
        ackTimeout: TimeAmount?,
        completion: @escaping (Result<ServerSideEmitResult, AdapterError>) -> Void
    )
    /// Runs `work` once everything this node asked of its own sockets so far has reached them:
    /// at once, unless the adapter applies its own requests later than it takes them (see
    /// ``ClusterTransport/appliesOwnRequestsOnReadBack``). The bridge runs commands that act
    /// on sockets directly through it, so that they keep their order after earlier emits.
    func afterOwnRequests(_ work: @escaping () -> Void)
}

extension Adapter {
    public func afterOwnRequests(_ work: @escaping () -> Void) {
        work()
    }
}

/// The layer above an adapter (the bridge) implements this to hear from other nodes.
public protocol AdapterDelegate: AnyObject {
    /// Another node's `serverSideEmit`. `reply` is set when that node waits for an answer;
    /// call it at most once. Only its first argument crosses nodes, as in Socket.IO.
    func adapter(
        didReceiveServerSideEmit event: String,
        args: [JSONValue],
        namespace: String,
        from node: String,
        reply: ((JSONValue) -> Void)?
    )
}

/// The answers to a `serverSideEmit` with acknowledgement, one per other node.
public struct ServerSideEmitResult: Sendable {
    public var responses: [JSONValue]
    public var expected: Int
    public var timedOut: Bool

    public init(responses: [JSONValue], expected: Int, timedOut: Bool) {
        self.responses = responses
        self.expected = expected
        self.timedOut = timedOut
    }
}

/// A socket as any node can describe it (`fetchSockets` results cross hosts as plain data).
public struct SocketDetails: Sendable, Hashable {
    public var id: String
    public var namespace: String
    /// Every room of the socket, its own id first (as `socket.rooms` iterates in Node).
    public var rooms: [String]
    public var handshake: JSONValue
    public var data: JSONValue

    public init(id: String, namespace: String, rooms: [String], handshake: JSONValue, data: JSONValue) {
        self.id = id
        self.namespace = namespace
        self.rooms = rooms
        self.handshake = handshake
        self.data = data
    }

    public init(_ socket: SocketIOSocket) {
        self.init(
            id: socket.id,
            namespace: socket.namespace.name,
            rooms: [socket.id] + socket.rooms.subtracting([socket.id]).sorted(),
            handshake: socket.handshake.json,
            data: socket.data
        )
    }

    public var json: JSONValue {
        [
            "sid": .string(id),
            "nsp": .string(namespace),
            "rooms": .array(rooms.map { .string($0) }),
            "handshake": handshake,
            "data": data,
        ]
    }
}

/// The answers collected by `broadcastWithAck`.
public struct BroadcastAckResult: Sendable {
    public struct Response: Sendable, Hashable {
        /// The answering socket; `nil` for a socket of another node, whose answers cross
        /// Redis without their sender, as in the Node adapter.
        public var socketID: String?
        public var args: [JSONValue]
    }

    public var responses: [Response]
    /// How many sockets were asked across all nodes that answered the request.
    public var expected: Int
    /// True when `timeout` passed before every asked socket answered.
    public var timedOut: Bool
}

/// Why an adapter request could not complete.
public enum AdapterError: Error, Sendable, Hashable {
    case timeout
    case unavailable(String)
}
