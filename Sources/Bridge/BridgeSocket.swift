import EngineIO
import NIOCore
import SidecastJSON
import SocketIO

/// A client's socket as the bridge and its backend groups handle it: the socket itself when it
/// lives on the bridge's loop, or a ``RemoteSocket`` standing for one of another shard.
enum BridgeSocket {
    case local(SocketIOSocket)
    case remote(RemoteSocket)

    var id: String {
        switch self {
        case .local(let socket): socket.id
        case .remote(let remote): remote.id
        }
    }

    var namespaceName: String {
        switch self {
        case .local(let socket): socket.namespace.name
        case .remote(let remote): remote.namespace
        }
    }

    /// The `connect` line a backend gets for this socket.
    func connectMessage(resumed: Bool) -> JSONValue {
        switch self {
        case .local(let socket): BackendMessage.connect(socket, resumed: resumed)
        case .remote(let remote): remote.connectMessage(resumed: resumed)
        }
    }

    /// Stops reading from the socket's client while its backend catches up.
    func pauseReading() {
        switch self {
        case .local(let socket): socket.pauseReading()
        case .remote(let remote): remote.pauseReading()
        }
    }

    func resumeReading() {
        switch self {
        case .local(let socket): socket.resumeReading()
        case .remote(let remote): remote.resumeReading()
        }
    }

    /// This socket of another shard with `data` when it is the socket `id`, else nil: a
    /// `data` command replaced its data, and a message about it waiting in a grace queue must
    /// say so when it is sent.
    func replacingRemoteData(of id: String, with data: JSONValue) -> BridgeSocket? {
        guard case .remote(var remote) = self, remote.id == id else { return nil }
        remote.data = data
        return .remote(remote)
    }
}

/// A socket of another shard, described by its shard's loop with each connect, event and
/// disconnect it hands to the bridge's loop. The bridge keeps no table of these: a table of
/// descriptions, each with a handle on its loop, cost the bridge's loop about 0.25 KiB per idle
/// socket of another shard, for what the socket itself holds. A description shares its values'
/// storage with the socket: the handshake is the session's one string, taken apart only for a
/// `connect` line.
///
/// The bridge adds, on its own loop, two things the shard cannot say in order: the data of a
/// backend's `data` command that the shard has not carried out yet (the command passes through
/// the bridge first), and a recovered socket's rooms as it got them back, which only its
/// connect carries.
struct RemoteSocket: Sendable {
    var id: String
    var namespace: String
    var auth: JSONValue?
    var handshake: EngineIOHandshake
    var data: JSONValue
    var recovered: Bool
    /// The rooms a recovered socket got back: taken with its connect, added by the bridge to
    /// its later messages; nil for any other socket.
    var recoveredRooms: [String]?
    /// Pausing and resuming the client are handed to the socket's loop.
    private let socket: NIOLoopBound<SocketIOSocket>

    /// `socket` as it is now, on its loop `loop`; `connecting` takes a recovered socket's rooms.
    init(_ socket: SocketIOSocket, loop: EventLoop, connecting: Bool) {
        id = socket.id
        namespace = socket.namespace.name
        auth = socket.auth
        handshake = socket.session.handshake
        data = socket.data
        recovered = socket.recovered
        recoveredRooms = connecting && socket.recovered ? socket.roomsOwnFirst : nil
        self.socket = NIOLoopBound(socket, eventLoop: loop)
    }

    func connectMessage(resumed: Bool) -> JSONValue {
        BackendMessage.connect(
            sid: id, namespace: namespace, auth: auth, handshake: SocketHandshake(handshake).json, data: data,
            resumed: resumed, recovered: recovered, rooms: recoveredRooms
        )
    }

    func pauseReading() {
        let socket = self.socket
        socket.eventLoop.execute { socket.value.pauseReading() }
    }

    func resumeReading() {
        let socket = self.socket
        socket.eventLoop.execute { socket.value.resumeReading() }
    }
}
