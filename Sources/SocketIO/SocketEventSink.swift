import SidecastJSON

/// What the server asks before a socket joins a namespace.
public struct ConnectRequest: Sendable {
    /// The id the socket will have once accepted; known up front so the decision can be sticky.
    public let socketID: String
    public let namespace: String
    /// The CONNECT packet's payload exactly as the client sent it, `nil` when absent.
    public let auth: JSONValue?
    public let handshake: SocketHandshake
    /// The client recovers the socket `socketID` (connection state recovery): accepted, it
    /// gets that socket's rooms and data back.
    public var recovering: Bool = false
}

/// The answer to a `ConnectRequest`.
public enum ConnectDecision: Sendable {
    /// Accepts the socket; `data` becomes the socket's data (as `socket.data` in Node).
    case accept(data: JSONValue?)
    /// Refuses it; the client receives CONNECT_ERROR with this message and data.
    case reject(message: String, data: JSONValue?)
}

/// The layer above Socket.IO (the backend bridge) implements this to learn what clients do.
///
/// Every call happens on the server's event loop.
public protocol SocketEventSink: AnyObject {
    /// Whether `namespace` is served right now; a CONNECT to any other gets "Invalid namespace".
    func namespaceExists(_ namespace: String) -> Bool
    /// Decides whether a client may join a namespace. `decide` must be called exactly once,
    /// on the event loop; the server ignores a decision that arrives after the client left.
    func authorize(_ request: ConnectRequest, decide: @escaping (ConnectDecision) -> Void)
    /// The client left while `authorize` was still deciding about `socketID`; its decision
    /// will be ignored, so the question can be withdrawn.
    func authorizationAbandoned(socketID: String, namespace: String)
    func socketDidConnect(_ socket: SocketIOSocket)
    /// A client emitted `event` on `socket`. When it asked for an ack, the socket owes it one
    /// (`SocketIOSocket.sendAck`).
    func socket(_ socket: SocketIOSocket, didReceive event: SocketIOEvent)
    func socket(_ socket: SocketIOSocket, didDisconnectWith reason: DisconnectReason)
}
