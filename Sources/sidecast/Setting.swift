import ArgumentParser

/// One setting of `sidecast`, named after its flag: `--port` is `port` in the config file and
/// `SIDECAST_PORT` in the environment.
///
/// This table is the single place a setting's name, type, default and help live, so `--help`,
/// `--print-config`, the environment and the config file cannot disagree.
enum Setting: String, CaseIterable, Sendable {
    case host
    case port
    case path
    case tlsCert = "tls-cert"
    case tlsKey = "tls-key"
    case tlsCA = "tls-ca"
    case socket
    case socketMode = "socket-mode"
    case corsOrigin = "cors-origin"
    case pingInterval = "ping-interval"
    case pingTimeout = "ping-timeout"
    case connectTimeout = "connect-timeout"
    case maxPayload = "max-payload"
    case maxBuffered = "max-buffered"
    case maxConnections = "max-connections"
    case threads
    case allowEIO3 = "allow-eio3"
    case parser
    case perMessageDeflate = "per-message-deflate"
    case httpCompression = "http-compression"
    case namespace
    case authorize
    case backendGrace = "backend-grace"
    case recoveryWindow = "recovery-window"
    case recoverySkipAuthorization = "recovery-skip-authorization"
    case recoveryMaxPackets = "recovery-max-packets"
    case redis
    case redisPrefix = "redis-prefix"
    case redisSentinel = "redis-sentinel"
    case redisMaster = "redis-master"
    case redisCluster = "redis-cluster"
    case redisSharded = "redis-sharded"
    case redisSubscriptionMode = "redis-subscription-mode"
    case redisStreams = "redis-streams"
    case redisStreamName = "redis-stream-name"
    case redisStreamMaxLen = "redis-stream-max-len"
    case redisStreamReadCount = "redis-stream-read-count"
    case redisSessionKeyPrefix = "redis-session-key-prefix"
    case redisPassword = "redis-password"
    case redisSentinelUsername = "redis-sentinel-username"
    case redisSentinelPassword = "redis-sentinel-password"
    case requestsTimeout = "requests-timeout"
    case relaySessions = "relay-sessions"
    case adminHost = "admin-host"
    case adminPort = "admin-port"
    case drainDelay = "drain-delay"
    case drainTimeout = "drain-timeout"
    case requireBackend = "require-backend"
    case logLevel = "log-level"
    case logFormat = "log-format"

    /// What a setting holds; decides how the environment and the config file spell it.
    enum Kind: Sendable {
        case string
        case integer
        /// Written as a float or an integer; seconds, so `0.5` is meaningful.
        case number
        case boolean
        /// Repeatable flag; a TOML array, or a comma-separated environment variable.
        case list
    }

    var flag: String { "--" + rawValue }

    var environmentVariable: String {
        "SIDECAST_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    var kind: Kind {
        switch self {
        case .host, .path, .tlsCert, .tlsKey, .tlsCA, .socket, .socketMode, .redis, .redisPrefix, .redisMaster, .redisPassword,
            .redisSentinelUsername, .redisSentinelPassword, .redisSubscriptionMode, .redisStreamName, .redisSessionKeyPrefix, .adminHost, .logLevel, .logFormat,
            .parser:
            return .string
        case .port, .pingInterval, .pingTimeout, .connectTimeout, .maxPayload, .maxBuffered, .maxConnections,
            .threads, .requestsTimeout, .adminPort, .redisStreamMaxLen, .redisStreamReadCount, .recoveryWindow,
            .recoveryMaxPackets:
            return .integer
        case .backendGrace, .drainDelay, .drainTimeout:
            return .number
        case .requireBackend, .redisSharded, .redisStreams, .allowEIO3, .perMessageDeflate, .httpCompression,
            .recoverySkipAuthorization, .relaySessions:
            return .boolean
        case .corsOrigin, .namespace, .authorize, .redisSentinel, .redisCluster:
            return .list
        }
    }

    var defaultValue: SettingValue {
        switch self {
        case .host: return .string("0.0.0.0")
        case .port: return .integer(3000)
        case .path: return .string("/socket.io/")
        case .tlsCert, .tlsKey, .tlsCA: return .string("")
        case .socket: return .string("sidecast.sock")
        case .socketMode: return .string("0660")
        case .corsOrigin: return .list([])
        case .pingInterval: return .integer(25_000)
        case .pingTimeout: return .integer(20_000)
        case .connectTimeout: return .integer(45_000)
        case .maxPayload: return .integer(1_000_000)
        case .maxBuffered: return .integer(1_048_576)
        case .maxConnections: return .integer(0)
        case .threads: return .integer(0)
        case .allowEIO3: return .boolean(false)
        case .parser: return .string("default")
        case .perMessageDeflate, .httpCompression: return .boolean(false)
        case .namespace: return .list(["/"])
        case .authorize: return .list([])
        case .backendGrace: return .number(10)
        case .recoveryWindow: return .integer(0)
        case .recoverySkipAuthorization: return .boolean(false)
        case .recoveryMaxPackets: return .integer(100_000)
        case .redis: return .string("")
        case .redisPrefix: return .string("socket.io")
        case .redisSentinel: return .list([])
        case .redisMaster: return .string("")
        case .redisCluster: return .list([])
        case .redisSharded, .relaySessions: return .boolean(false)
        case .redisSubscriptionMode: return .string("dynamic")
        case .redisStreams: return .boolean(false)
        case .redisStreamName: return .string("socket.io")
        case .redisStreamMaxLen: return .integer(10_000)
        case .redisStreamReadCount: return .integer(100)
        case .redisSessionKeyPrefix: return .string("sio:session:")
        case .redisPassword: return .string("")
        case .redisSentinelUsername: return .string("")
        case .redisSentinelPassword: return .string("")
        case .requestsTimeout: return .integer(5_000)
        case .adminHost: return .string("127.0.0.1")
        case .adminPort: return .integer(9464)
        case .drainDelay: return .number(5)
        case .drainTimeout: return .number(30)
        case .requireBackend: return .boolean(false)
        case .logLevel: return .string("info")
        case .logFormat: return .string("text")
        }
    }

    var summary: String {
        switch self {
        case .host: return "Address to listen on for Socket.IO clients."
        case .port: return "TCP port for Socket.IO clients."
        case .path: return "HTTP path Socket.IO is served under."
        case .tlsCert:
            return "PEM certificate (chain) of the client listener, which then speaks HTTPS and WSS; reread on SIGHUP. Needs --tls-key."
        case .tlsKey: return "PEM private key of --tls-cert; reread on SIGHUP."
        case .tlsCA: return "PEM CA certificates client certificates must chain to; set, clients without one are refused."
        case .socket: return "Unix socket path backends attach to."
        case .socketMode: return "File mode of the backend socket, in octal."
        case .corsOrigin:
            return "Origin whose pages may connect (https://app.example.com, https://*.example.com); repeat for several, "
                + "'*' for any. It gets CORS headers; a request from any other origin is refused with 403. "
                + "None sends no CORS headers and checks no origin."
        case .pingInterval: return "Milliseconds between server pings."
        case .pingTimeout: return "Milliseconds to wait for a pong before closing with 'ping timeout'."
        case .connectTimeout: return "Milliseconds a client may stay connected without joining a namespace."
        case .maxPayload: return "Largest Engine.IO message or HTTP body a client may send, in bytes."
        case .maxBuffered:
            return "Bytes that may wait for one client; past it volatile packets are dropped, then the client is disconnected."
        case .maxConnections:
            return "Client connections served at once; past it new ones get HTTP 503. 0 derives it from the open-file limit, less a reserve for backends, Redis, the admin listener and files."
        case .threads:
            return "Event loops serving clients, each with its share of them; 0 is one per CPU this process may run on (its affinity mask and cgroup CPU quota)."
        case .allowEIO3:
            return "Also serve Engine.IO v3 clients (Socket.IO 2.x, python-socketio 4.x), as Node's allowEIO3."
        case .parser:
            return "Packet format for every client: default (JSON text with binary attachments) or msgpack (socket.io-msgpack-parser)."
        case .perMessageDeflate:
            return "Compress WebSocket messages of 1024 bytes or more with permessage-deflate for clients that offer it, as Node's perMessageDeflate."
        case .httpCompression:
            return "Compress long-polling responses of 1024 bytes or more with gzip or deflate, by Accept-Encoding, as Node's httpCompression."
        case .namespace: return "Namespace that exists even with no backend attached; repeatable."
        case .authorize:
            return "Namespace whose clients always need a backend's authorization, refused while no authorizing backend is attached; repeatable."
        case .backendGrace: return "Seconds a backend group's messages wait for a backend to (re)attach."
        case .recoveryWindow:
            return "Milliseconds a dropped client may take to come back with its socket id, rooms and data and get the events it missed (connection state recovery, Node's maxDisconnectionDuration); 0 turns recovery off."
        case .recoverySkipAuthorization:
            return "A recovered client is not sent to the authorizing backend again (Node's skipMiddlewares)."
        case .recoveryMaxPackets:
            return "Events the node keeps for recovering clients, besides the recovery window; past it the oldest is dropped."
        case .redis:
            return "Redis URL shared by the cluster: redis://[user:password@]host:port[/db] or unix:///path. Empty runs a standalone node."
        case .redisPrefix: return "Prefix of the Redis channels, as the Socket.IO Redis adapter's key option."
        case .redisSentinel:
            return "Sentinel host:port to ask for the Redis master, followed across failovers; repeatable or comma-separated. Needs --redis-master."
        case .redisMaster: return "Name Sentinel monitors the Redis master under (with --redis-sentinel)."
        case .redisCluster:
            return "Seed node host:port of a Redis Cluster, used with classic pub/sub; repeatable or comma-separated."
        case .redisSharded:
            return "Use Redis 7 sharded pub/sub (SPUBLISH/SSUBSCRIBE, the wire format of createShardedAdapter) with --redis-cluster or --redis."
        case .redisSubscriptionMode:
            return "With --redis-sharded: static (one channel per namespace), dynamic (plus one per public room) or dynamic-private (plus one per socket), as the Node adapter's subscriptionMode."
        case .redisStreams:
            return "Carry the cluster's messages through one Redis stream (XADD/XREAD, the wire format of @socket.io/redis-streams-adapter) on the --redis server, so a Redis outage loses nothing still in the stream."
        case .redisStreamName: return "With --redis-streams: the stream's key, as the Node adapter's streamName."
        case .redisStreamMaxLen:
            return "With --redis-streams: about how many entries the stream keeps (XADD MAXLEN ~), as the Node adapter's maxLen."
        case .redisStreamReadCount: return "With --redis-streams: entries fetched per XREAD, as the Node adapter's readCount."
        case .redisSessionKeyPrefix:
            return "With --redis-streams and --recovery-window: where dropped sockets' sessions are kept (<prefix><pid>), as the Node adapter's sessionKeyPrefix."
        case .redisPassword: return "Password of the Redis data nodes with --redis-sentinel or --redis-cluster."
        case .redisSentinelUsername:
            return "ACL user to log in to the sentinels as (with --redis-sentinel-password); empty uses the default user."
        case .redisSentinelPassword:
            return "Password of the sentinels themselves (their requirepass), with --redis-sentinel; the data nodes use --redis-password."
        case .requestsTimeout:
            return "Milliseconds cluster requests (fetch, count, acks across nodes, and with --relay-sessions the owner's first answer to a relayed request) wait for other nodes."
        case .relaySessions:
            return "Relay each polling request and WebSocket upgrade of a session made by another sidecast node to that node over Redis, so the load balancer needs no sticky sessions; every node of the cluster must be a sidecast with it on. Needs a Redis setting (not yet --redis-streams)."
        case .adminHost: return "Address of the admin listener (/metrics, /healthz, /readyz)."
        case .adminPort: return "TCP port of the admin listener; 0 picks a free port."
        case .drainDelay:
            return "Seconds between SIGTERM (readyz turns false) and closing clients, so load balancers stop sending new ones."
        case .drainTimeout:
            return "Seconds a shutdown may take, drain delay included; whatever is still open after it is closed by force."
        case .requireBackend: return "/readyz reports not ready until every configured namespace has a backend."
        case .logLevel: return "trace, debug, info, notice, warning, error or critical."
        case .logFormat: return "text, or json for one JSON object per line."
        }
    }

    /// The placeholder `--help` shows for the option's value.
    var valueName: String {
        switch self {
        case .host, .adminHost: return "address"
        case .port, .adminPort: return "port"
        case .path, .socket, .tlsCert, .tlsKey, .tlsCA: return "path"
        case .socketMode, .redisSubscriptionMode: return "mode"
        case .corsOrigin: return "origin"
        case .pingInterval, .pingTimeout, .connectTimeout, .requestsTimeout, .recoveryWindow: return "ms"
        case .maxPayload, .maxBuffered: return "bytes"
        case .maxConnections, .threads, .recoveryMaxPackets: return "count"
        case .namespace, .authorize: return "namespace"
        case .backendGrace, .drainDelay, .drainTimeout: return "seconds"
        case .redis: return "url"
        case .redisPrefix, .redisSessionKeyPrefix: return "prefix"
        case .redisStreamName: return "key"
        case .redisStreamMaxLen, .redisStreamReadCount: return "count"
        case .redisSentinel, .redisCluster: return "host:port"
        case .redisMaster: return "name"
        case .redisPassword, .redisSentinelPassword: return "password"
        case .redisSentinelUsername: return "user"
        case .requireBackend, .redisSharded, .redisStreams, .allowEIO3, .perMessageDeflate, .httpCompression,
            .recoverySkipAuthorization, .relaySessions:
            return "bool"
        case .parser: return "parser"
        case .logLevel: return "level"
        case .logFormat: return "format"
        }
    }

    /// `--help` text: the summary, then the default and the environment variable, which
    /// ArgumentParser cannot show for options that are optional so that an unset flag is visible.
    var help: ArgumentHelp {
        ArgumentHelp(
            "\(summary) (default: \(defaultValue.helpDescription); env: \(environmentVariable))",
            valueName: valueName
        )
    }
}

/// A setting's value, as any source gives it once its type is checked.
enum SettingValue: Equatable, Sendable {
    case string(String)
    case integer(Int)
    case number(Double)
    case boolean(Bool)
    case list([String])

    var helpDescription: String {
        switch self {
        case .string(let value): return value.isEmpty ? "none" : value
        case .integer(let value): return String(value)
        case .number(let value): return value == value.rounded() ? String(Int(value)) : String(value)
        case .boolean(let value): return String(value)
        case .list(let values): return values.isEmpty ? "none" : values.joined(separator: ",")
        }
    }
}
