import NIOCore

/// Everything `sidecast` can be told at start, with the defaults of its flags.
public struct SidecastConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 3000
    /// Where Socket.IO is served, as Socket.IO's `path` option.
    public var path = "/socket.io/"
    /// The backends' Unix socket.
    public var socketPath = "sidecast.sock"
    public var socketMode: UInt16 = 0o660
    /// Allowed CORS origins; empty sends no CORS headers, `*` allows any.
    public var corsOrigins: [String] = []
    public var pingInterval: TimeAmount = .milliseconds(25_000)
    public var pingTimeout: TimeAmount = .milliseconds(20_000)
    public var connectTimeout: TimeAmount = .milliseconds(45_000)
    public var maxPayload = 1_000_000
    /// Bytes that may wait for one slow client before it is cut off (volatile packets go first).
    public var maxBuffered = 1 << 20
    /// Namespaces that exist even with no backend attached.
    public var namespaces: Set<String> = ["/"]
    public var backendGrace: TimeAmount = .seconds(10)
    /// The Redis server shared by the cluster; `nil` runs a standalone node.
    public var redisURL: String?
    /// Prefix of every Redis channel, as the Node adapter's `key` option.
    public var redisPrefix = "socket.io"
    /// How long cluster requests (fetch, count, acks across nodes) wait for other nodes.
    public var requestsTimeout: TimeAmount = .milliseconds(5_000)

    public init() {}
}
