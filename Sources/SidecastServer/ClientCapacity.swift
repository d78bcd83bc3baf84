#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit, after raising the soft limit to the hard limit: every client
/// connection is a descriptor, and a soft limit left at a shell's 1024 would cap a node far
/// below what the operator allowed (systemd's `LimitNOFILE=`, `ulimit -Hn`).
public struct OpenFileLimit: Sendable, Equatable {
    /// The soft limit found at start.
    public var before: Int
    /// The soft limit in force now: the hard limit when raising it worked.
    public var current: Int

    /// Raises the soft limit to the hard one; doing it again changes nothing.
    public static func raisingSoftLimit() -> OpenFileLimit {
        #if os(Linux)
        let resource = Int32(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else {
            return OpenFileLimit(before: 1024, current: 1024)
        }
        let before = limit.rlim_cur
        var target = limit.rlim_max
        // An unlimited hard limit (RLIM_INFINITY, which Swift does not import) still has the
        // kernel's cap, fs.nr_open on Linux, and an infinite soft limit is refused.
        if target >= rlim_t(Int32.max) { target = rlim_t(1 << 20) }
        if target > before {
            var raised = limit
            raised.rlim_cur = target
            if setrlimit(resource, &raised) == 0 {
                return OpenFileLimit(before: Int(clamping: before), current: Int(clamping: target))
            }
        }
        return OpenFileLimit(before: Int(clamping: before), current: Int(clamping: before))
    }
}

/// How many client connections a node serves at once, and how that number came about.
///
/// Clients may use the open-file limit less a reserve, so that at the cap a backend can still
/// attach, an orchestrator can still ask /healthz and /readyz, and Redis can still reconnect.
public struct ClientCapacity: Sendable, Equatable {
    /// Descriptors the process itself holds: stdio, the event loop's epoll, eventfd and timerfd,
    /// the three listeners, the spare descriptor (`DescriptorReserve`), Dispatch's and the
    /// log's, with room to spare.
    public static let processReserve = 32
    /// Backends attached at once on the Unix socket.
    public static let backendReserve = 32
    /// Admin requests in flight (/metrics scrapes, health checks) and refusals being answered.
    public static let adminReserve = 16

    /// Client connections served at once (`--max-connections`, or derived).
    public var maxConnections: Int
    /// The open-file limit in force.
    public var openFileLimit: Int
    /// How `maxConnections` was arrived at, for `--print-config` and the start log.
    public var derivation: String
    /// Whether a `--max-connections` given leaves less than the reserve of the open-file limit.
    public var isAboveLimit = false

    public init(configuration: SidecastConfiguration, limit: OpenFileLimit) {
        let raised = limit.current > limit.before ? " (soft limit raised from \(limit.before))" : ""
        let redis = Self.redisReserve(configuration)
        let reserve = Self.processReserve + Self.backendReserve + Self.adminReserve + redis
        openFileLimit = limit.current
        guard configuration.maxConnections == 0 else {
            maxConnections = configuration.maxConnections
            let room = limit.current - reserve
            isAboveLimit = configuration.maxConnections > room
            derivation = configuration.maxConnections > room
                ? "set; above the \(room) that the open-file limit \(limit.current)\(raised) leaves after its reserve of \(reserve)"
                : "set; the open-file limit is \(limit.current)\(raised)"
            return
        }
        let parts = "\(Self.processReserve) for the process, \(Self.backendReserve) for backends, "
            + "\(Self.adminReserve) for admin requests, \(redis) for Redis"
        // A tiny limit still leaves clients a quarter of it rather than nothing.
        guard limit.current - reserve >= limit.current / 4 else {
            maxConnections = max(limit.current / 4, 1)
            derivation = "\(maxConnections) = a quarter of the open-file limit \(limit.current)\(raised), "
                + "too small for the reserve of \(reserve) (\(parts))"
            return
        }
        maxConnections = limit.current - reserve
        derivation = "\(maxConnections) = open-file limit \(limit.current)\(raised) less \(reserve) reserved: \(parts)"
    }

    /// Two links (commands, subscriptions) per Redis node and room for their reconnects; a
    /// Sentinel link besides; Cluster's nodes are unknown at start, so room for 16 masters.
    private static func redisReserve(_ configuration: SidecastConfiguration) -> Int {
        if !configuration.redisClusterNodes.isEmpty { return 4 * max(16, configuration.redisClusterNodes.count) }
        if !configuration.redisSentinels.isEmpty { return 8 }
        if configuration.redisURL != nil { return 4 }
        return 0
    }
}
