import NIOCore
import SidecastJSON
import SocketIO

/// What one node publishes to every other node serving a namespace: the requests and notices
/// of the Socket.IO cluster protocol, apart from any wire format.
///
/// Each transport writes these in its own format (the classic Redis adapter's requests and
/// broadcasts, or socket.io-adapter's `ClusterMessage`) and reads them back, so
/// ``ClusterAdapter`` holds the protocol's logic once.
public enum ClusterRequest: Sendable, Hashable {
    /// A broadcast; with a request id every node answers `broadcastClientCount`, then one
    /// `broadcastAck` per answering socket.
    case broadcast(packet: SocketIOPacket, options: ClusterOptions, requestId: String?)
    case socketsJoin(options: ClusterOptions, rooms: [String])
    case socketsLeave(options: ClusterOptions, rooms: [String])
    case disconnectSockets(options: ClusterOptions, close: Bool)
    /// Every node answers `fetchSockets` with its matching sockets.
    case fetchSockets(options: ClusterOptions, requestId: String)
    /// Every node answers `allRooms` (only transports whose format has this request carry it).
    case allRooms(requestId: String)
    /// `packet` is the event name then its arguments; with a request id every node answers
    /// `serverSideEmit` once.
    case serverSideEmit(requestId: String?, packet: [JSONValue])

    /// The id answers will carry; nil when the sender waits for none.
    public var requestId: String? {
        switch self {
        case .broadcast(_, _, let id), .serverSideEmit(let id, _): return id
        case .fetchSockets(_, let id), .allRooms(let id): return id
        case .socketsJoin, .socketsLeave, .disconnectSockets: return nil
        }
    }
}

/// What a node sends back to the node whose request it answers.
public enum ClusterResponse: Sendable, Hashable {
    case fetchSockets(requestId: String, sockets: [RedisSocketDetails])
    case allRooms(requestId: String, rooms: [String])
    /// The first argument the handler answered with; nil when it answered without one.
    case serverSideEmit(requestId: String, packet: JSONValue?)
    case broadcastClientCount(requestId: String, clientCount: Int)
    /// The first argument of one socket's acknowledgement; nil when it had none.
    case broadcastAck(requestId: String, packet: JSONValue?)

    public var requestId: String {
        switch self {
        case .fetchSockets(let id, _), .allRooms(let id, _), .serverSideEmit(let id, _),
            .broadcastClientCount(let id, _), .broadcastAck(let id, _):
            return id
        }
    }
}

/// How the cluster adapter reaches the other nodes: the only part that differs between classic
/// Redis pub/sub, sharded pub/sub and any later medium (as socket.io-adapter's `ClusterAdapter`
/// leaves `doPublish`, `doPublishResponse` and `serverCount` to its subclasses).
///
/// Confined to the Socket.IO server's event loop, like the adapter that drives it.
public protocol ClusterTransport: AnyObject {
    /// Receives what other nodes send; set by the adapter before the first `serve`.
    var delegate: ClusterTransportDelegate? { get set }
    /// Whether the format carries `ClusterRequest.allRooms`; without it the adapter derives the
    /// rooms from every node's sockets, as socket.io-adapter's `ClusterAdapter` has no such request.
    var carriesAllRoomsRequests: Bool { get }
    /// Whether the transport wants `roomCreated` / `roomDeleted` (to subscribe room channels).
    var followsRooms: Bool { get }
    /// Starts listening for a namespace's traffic. Called once per namespace.
    func serve(namespace: String)
    /// Publishes to every node serving `namespace`, this one excepted.
    func publish(_ request: ClusterRequest, namespace: String)
    /// Publishes an answer for the node `requester` (nil: an emitter, which never waits for one).
    func publishResponse(_ response: ClusterResponse, to requester: String?, namespace: String)
    /// A room got its first member on this node; `isPrivate` when it is a socket's own-id room.
    func roomCreated(_ room: String, isPrivate: Bool, namespace: String)
    /// A room lost its last member on this node.
    func roomDeleted(_ room: String, namespace: String)
    /// How many nodes serve `namespace`, this one included; fails when the medium is unreachable.
    func serverCount(namespace: String, completion: @escaping (Result<Int, AdapterError>) -> Void)
    /// Stops listening, so the other nodes stop counting this one at once.
    func close()
    /// Whether this node applies its own broadcasts, joins, leaves and disconnects (those not
    /// `local`, without acks) when it reads them back from the medium rather than at once, so
    /// its sockets get them in the medium's order: what recovery on a Redis stream needs.
    var appliesOwnRequestsOnReadBack: Bool { get }
}

extension ClusterTransport {
    public var appliesOwnRequestsOnReadBack: Bool { false }
}

/// The cluster adapter, as its transport's listener.
public protocol ClusterTransportDelegate: AnyObject {
    /// Another node's request or notice for `namespace`; `sender` is nil for an emitter.
    func transport(didReceive request: ClusterRequest, from sender: String?, namespace: String)
    /// One of this node's own requests read back from the medium, to apply to its sockets
    /// now (see ``ClusterTransport/appliesOwnRequestsOnReadBack``).
    func transport(didReadBack request: ClusterRequest, namespace: String)
    /// An answer to one of this node's requests.
    func transport(didReceive response: ClusterResponse)
    /// Whether this node has a member of `room`: a transport that learns the target room from
    /// the channel drops messages for rooms this node doesn't hold without decoding them.
    func transport(holdsRoom room: String, namespace: String) -> Bool
}

extension ClusterOptions {
    /// The options as the local server applies them: only this node's sockets.
    func local(_ namespace: String) -> BroadcastOptions {
        BroadcastOptions(namespace: namespace, rooms: Set(rooms), except: Set(except), volatile: flags.volatile, local: true)
    }

    init(_ options: BroadcastOptions, timeout: TimeAmount? = nil) {
        self.init(
            rooms: options.rooms.sorted(),
            except: options.except.sorted(),
            flags: RedisBroadcastFlags(volatile: options.volatile, timeout: timeout.map { $0.nanoseconds / 1_000_000 })
        )
    }
}
