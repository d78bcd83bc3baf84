import NIOCore
import SidecastJSON
import SocketIO

/// Decides which nodes an operation reaches; the Socket.IO server decides which local sockets.
///
/// The bridge calls only this protocol, so a single node (`LocalAdapter`) and a cluster
/// (the Redis adapter) are interchangeable. Every call and every completion happens on the
/// Socket.IO server's event loop.
public protocol Adapter: AnyObject {
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
        public var socketID: String
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
