import NIOCore

/// The transports an Engine.IO server can accept (`transport` query parameter).
public enum EngineIOTransportKind: String, Sendable, Hashable {
    case polling
    case websocket
}

/// Engine.IO server options, named and defaulted like the Node server's `ServerOptions`.
public struct EngineIOConfiguration: Sendable {
    /// Request path prefix handled by the server; the Node server's `path` with its trailing slash.
    public var path: String
    /// How often the server sends a ping packet.
    public var pingInterval: TimeAmount
    /// How long the server waits for the pong before closing the session with "ping timeout".
    public var pingTimeout: TimeAmount
    /// How long a WebSocket upgrade of a polling session may take before the WebSocket is dropped.
    public var upgradeTimeout: TimeAmount
    /// Largest accepted POST body or WebSocket message, in bytes (Node's `maxHttpBufferSize`).
    public var maxPayload: Int
    /// The origins whose pages may connect: CORS answers them, and a request carrying any other
    /// `Origin` is refused with 403. Empty sends no CORS headers and checks nothing.
    public var allowedOrigins: AllowedOrigins
    /// Enabled transports; a session opened over polling is offered the upgrade only when
    /// `.websocket` is in this set.
    public var transports: Set<EngineIOTransportKind>

    public init() {
        self.path = "/engine.io/"
        self.pingInterval = .seconds(25)
        self.pingTimeout = .seconds(20)
        self.upgradeTimeout = .seconds(10)
        self.maxPayload = 1_000_000
        self.allowedOrigins = .none
        self.transports = [.polling, .websocket]
    }
}
