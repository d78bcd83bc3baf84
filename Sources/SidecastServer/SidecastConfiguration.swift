import Adapter
import EngineIO
import NIOCore
import SocketIO

/// Which channels a sharded node subscribes (`--redis-subscription-mode`).
public typealias RedisSubscriptionMode = ShardedSubscriptionMode

/// The packet format of every client (`--parser`).
public typealias PacketParser = SocketIOParserKind

/// Everything `sidecast` can be told at start, with the defaults of its flags.
public struct SidecastConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 3000
    /// Where Socket.IO is served, as Socket.IO's `path` option.
    public var path = "/socket.io/"
    /// TLS on the client listener; `nil` serves plain HTTP and WebSocket.
    public var tls: ClientTLSFiles?
    /// The backends' Unix socket.
    public var socketPath = "sidecast.sock"
    public var socketMode: UInt16 = 0o660
    /// The origins whose pages may connect: they get CORS headers, and a request carrying any
    /// other `Origin` is refused with 403. Empty sends no CORS headers and checks no origin; `*`
    /// allows any; `https://*.example.com` allows the subdomains of example.com.
    public var corsOrigins: [String] = []
    /// Why `origin` cannot be an entry of `corsOrigins`, or nil if it can.
    public static func corsOriginProblem(_ origin: String) -> String? {
        do {
            _ = try AllowedOrigins([origin])
            return nil
        } catch {
            return error.reason
        }
    }
    public var pingInterval: TimeAmount = .milliseconds(25_000)
    public var pingTimeout: TimeAmount = .milliseconds(20_000)
    public var connectTimeout: TimeAmount = .milliseconds(45_000)
    public var maxPayload = 1_000_000
    /// Bytes that may wait for one slow client before it is cut off (volatile packets go first).
    public var maxBuffered = 1 << 20
    /// Client connections served at once; past it new ones get HTTP 503. 0 derives it from the
    /// open-file limit (`ClientCapacity`).
    public var maxConnections = 0
    /// Event loops serving clients (`--threads`, 0 resolved to the CPU allowance), one shard each.
    public var threads = 1
    /// Whether Engine.IO v3 clients are served too (`--allow-eio3`).
    public var allowEIO3 = false
    /// The packet format of every client (`--parser`).
    public var parser = PacketParser.default
    /// permessage-deflate for WebSocket clients that offer it (Node's `perMessageDeflate`).
    public var perMessageDeflate = false
    /// gzip/deflate for long-polling responses (Node's `httpCompression`).
    public var httpCompression = false
    /// Namespaces that exist even with no backend attached.
    public var namespaces: Set<String> = ["/"]
    /// Namespaces that always require a backend's authorization (`--authorize`); they exist
    /// like `namespaces`, and their clients are refused while no authorizing backend is attached.
    public var authorizedNamespaces: Set<String> = []
    public var backendGrace: TimeAmount = .seconds(10)
    /// Connection state recovery (Node's `maxDisconnectionDuration`); zero keeps it off.
    public var recoveryWindow: TimeAmount = .zero
    /// A recovered socket skips the authorizing backend (Node's `skipMiddlewares`).
    public var recoverySkipAuthorization = false
    /// Events kept for recovering clients at most, on top of the window.
    public var recoveryMaxPackets = 100_000
    /// The Redis server shared by the cluster; `nil` runs a standalone node.
    public var redisURL: String?
    /// Sentinel mode: the sentinels, `host:port` each, asked for the master named `redisMasterName`.
    public var redisSentinels: [String] = []
    public var redisMasterName = ""
    /// Cluster mode: seed nodes, `host:port` each, of a Redis Cluster used with classic pub/sub.
    public var redisClusterNodes: [String] = []
    /// Sharded pub/sub (Redis 7 SPUBLISH/SSUBSCRIBE) in the format of `createShardedAdapter`,
    /// over the Cluster nodes or the single `redisURL`.
    public var redisSharded = false
    /// With `redisSharded`: which channels a node subscribes, as the Node adapter's
    /// `subscriptionMode`.
    public var redisSubscriptionMode = RedisSubscriptionMode.dynamic
    /// One Redis stream in the format of `@socket.io/redis-streams-adapter`, on `redisURL`,
    /// instead of pub/sub.
    public var redisStreams = false
    /// With `redisStreams`: the Node adapter's `streamName`, `maxLen` and `readCount`.
    public var redisStreamName = "socket.io"
    public var redisStreamMaxLen = 10_000
    public var redisStreamReadCount = 100
    /// With `--redis-streams` and recovery: the key of a dropped socket's session is this
    /// prefix and its pid, as the Node adapter's `sessionKeyPrefix`.
    public var redisSessionKeyPrefix = RedisStreamSessionStore.defaultKeyPrefix
    /// The data nodes' password in Sentinel and Cluster modes.
    public var redisPassword: String?
    /// Sentinel mode: the credentials of the sentinels themselves, if they require any.
    public var redisSentinelUsername: String?
    public var redisSentinelPassword: String?
    /// Prefix of every Redis channel, as the Node adapter's `key` option.
    public var redisPrefix = "socket.io"
    /// How this node reaches Redis, for logs: never shows a password.
    public var redisMode: String {
        if redisURL != nil { return redisSharded ? "single, sharded pub/sub" : redisStreams ? "single, stream" : "single" }
        if !redisSentinels.isEmpty { return "sentinel" }
        if !redisClusterNodes.isEmpty { return redisSharded ? "cluster, sharded pub/sub" : "cluster" }
        return "off (standalone)"
    }

    /// How long cluster requests (fetch, count, acks across nodes) wait for other nodes.
    public var requestsTimeout: TimeAmount = .milliseconds(5_000)
    /// Relays polling requests and upgrades of other nodes' sessions to their owner over Redis,
    /// and writes this node into its session ids (`--relay-sessions`).
    public var relaySessions = false
    /// Where the admin HTTP listener serves /metrics, /healthz and /readyz; kept apart from the
    /// client port so it can stay private. Port 0 picks a free port.
    public var adminHost = "127.0.0.1"
    public var adminPort = 9464
    /// On SIGTERM, how long /readyz reports "draining" before clients are closed, so a load
    /// balancer stops sending new ones first. SIGINT skips it.
    public var drainDelay: TimeAmount = .seconds(5)
    /// The longest a shutdown may take, delay included; whatever is still open after it is forced.
    public var drainTimeout: TimeAmount = .seconds(30)
    /// Whether /readyz waits for a backend on every configured namespace.
    public var requireBackend = false

    public init() {}
}
