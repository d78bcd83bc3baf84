import EngineIO
import NIOCore
import SidecastJSON
import SocketIO

/// A client's socket as the bridge and its backend groups handle it: the socket itself when it
/// lives on the bridge's loop, or a ``RemoteSocket`` standing for one of another shard.
protocol BridgeSocket: AnyObject {
    var id: String { get }
    var namespaceName: String { get }
    /// The `connect` line a backend gets for this socket.
    func connectMessage(resumed: Bool) -> JSONValue
    /// Stops reading from the socket's client while its backend catches up.
    func pauseReading()
    func resumeReading()
}

extension SocketIOSocket: BridgeSocket {
    var namespaceName: String { namespace.name }

    func connectMessage(resumed: Bool) -> JSONValue {
        BackendMessage.connect(self, resumed: resumed)
    }
}

/// What the bridge needs of a socket of another shard, taken on that shard's loop when the
/// socket connected. The values share their storage with the socket's own: the handshake is
/// kept as the session's one string and taken apart only for a `connect` line (a JSON tree or
/// a ``SocketHandshake`` of its headers cost about 1.1 KiB per idle connection on the home loop).
public struct RemoteSocketSnapshot: Sendable {
    var id: String
    var namespace: String
    var auth: JSONValue?
    var handshake: EngineIOHandshake
    var data: JSONValue
    /// The rooms a recovered socket got back; nil for any other.
    var recoveredRooms: [String]?

    init(_ socket: SocketIOSocket) {
        id = socket.id
        namespace = socket.namespace.name
        auth = socket.auth
        handshake = socket.session.handshake
        data = socket.data
        recoveredRooms = socket.recovered ? socket.roomsOwnFirst : nil
    }
}

/// On the bridge's loop: a socket of another shard. Its `connect` line comes from the snapshot
/// (kept up to date with the backends' `data` commands, which pass through the bridge); pausing
/// and resuming are handed to the socket's loop.
final class RemoteSocket: BridgeSocket {
    var snapshot: RemoteSocketSnapshot
    private let socket: NIOLoopBound<SocketIOSocket>

    init(snapshot: RemoteSocketSnapshot, socket: NIOLoopBound<SocketIOSocket>) {
        self.snapshot = snapshot
        self.socket = socket
    }

    var id: String { snapshot.id }
    var namespaceName: String { snapshot.namespace }

    func connectMessage(resumed: Bool) -> JSONValue {
        BackendMessage.connect(
            sid: snapshot.id, namespace: snapshot.namespace, auth: snapshot.auth,
            handshake: SocketHandshake(snapshot.handshake).json, data: snapshot.data, resumed: resumed,
            recovered: snapshot.recoveredRooms != nil, rooms: snapshot.recoveredRooms
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
