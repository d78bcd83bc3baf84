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
    /// The event loop's shard this server is, written into its session ids.
    public var shard: LoopShard
    /// Whether Engine.IO v3 clients (`EIO=3`, Socket.IO 2.x) are served; Node's `allowEIO3`.
    public var allowEIO3: Bool
    /// Whether clients reach the server over TLS, which the server does not see itself: every
    /// handshake's `secure`, as Node's `request.connection.encrypted`.
    public var isSecure: Bool
    /// permessage-deflate for clients that offer it (Node's `perMessageDeflate`): messages of at
    /// least this many bytes are compressed. Nil leaves the extension off.
    public var perMessageDeflateThreshold: Int?
    /// gzip or deflate for long-polling responses of at least this many bytes, by the request's
    /// Accept-Encoding (Node's `httpCompression`). Nil leaves them uncompressed.
    public var httpCompressionThreshold: Int?

    public init() {
        self.path = "/engine.io/"
        self.pingInterval = .seconds(25)
        self.pingTimeout = .seconds(20)
        self.upgradeTimeout = .seconds(10)
        self.maxPayload = 1_000_000
        self.allowedOrigins = .none
        self.transports = [.polling, .websocket]
        self.shard = .only
        self.allowEIO3 = false
        self.isSecure = false
        self.perMessageDeflateThreshold = nil
        self.httpCompressionThreshold = nil
    }
}
