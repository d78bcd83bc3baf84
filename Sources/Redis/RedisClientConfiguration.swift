import NIOCore

/// Where a ``RedisClient`` connects and how it behaves while Redis is unreachable.
public struct RedisClientConfiguration: Sendable {
    /// The server in the standalone topology; in the others only its credentials and database count.
    public var url: RedisURL
    public var topology: RedisTopology
    /// Sentinel mode: the ACL user and password the sentinels themselves require (a
    /// Sentinel's own `requirepass` or ACL), distinct from the data nodes' in ``url``.
    public var sentinelUser: String?
    public var sentinelPassword: String?
    /// Cluster mode: how often the node list is read again, besides after every failure.
    public var clusterRefreshInterval: TimeAmount
    /// Publishes kept while disconnected; past it the oldest are dropped and counted.
    public var outboxLimit: Int
    /// The first reconnect delay; it doubles after every failed attempt, up to ``maxBackoff``.
    public var minBackoff: TimeAmount
    public var maxBackoff: TimeAmount
    /// Bounds both the TCP connect and the AUTH/SELECT/SUBSCRIBE handshake that follows.
    public var connectTimeout: TimeAmount
    /// How long publishes queued during an outage wait after the links are back before they
    /// go out. Redis pub/sub delivers only to current subscribers, so a publish sent before the
    /// other nodes resubscribed is lost: every node retries within ``maxBackoff``, and this
    /// waits a little longer than that.
    ///
    /// It is the upper bound: the outbox goes out as soon as Redis counts again the subscribers
    /// it counted before the outage on the channels this client subscribes (polled every
    /// ``outboxSettlePollInterval``, counted every ``subscriberSampleInterval`` while connected).
    public var outboxSettleDelay: TimeAmount
    public var outboxSettlePollInterval: TimeAmount
    public var subscriberSampleInterval: TimeAmount

    public init(
        url: RedisURL,
        topology: RedisTopology = .standalone,
        sentinelUser: String? = nil,
        sentinelPassword: String? = nil,
        clusterRefreshInterval: TimeAmount = .seconds(5),
        outboxLimit: Int = 10_000,
        minBackoff: TimeAmount = .milliseconds(100),
        maxBackoff: TimeAmount = .seconds(1),
        connectTimeout: TimeAmount = .seconds(5),
        outboxSettleDelay: TimeAmount? = nil,
        outboxSettlePollInterval: TimeAmount = .milliseconds(50),
        subscriberSampleInterval: TimeAmount = .seconds(1)
    ) {
        self.url = url
        self.topology = topology
        self.sentinelUser = sentinelUser
        self.sentinelPassword = sentinelPassword
        self.clusterRefreshInterval = max(.milliseconds(100), clusterRefreshInterval)
        self.outboxLimit = max(0, outboxLimit)
        self.minBackoff = max(.milliseconds(1), minBackoff)
        self.maxBackoff = max(self.minBackoff, maxBackoff)
        self.connectTimeout = connectTimeout
        self.outboxSettleDelay = outboxSettleDelay ?? (self.maxBackoff + .milliseconds(500))
        self.outboxSettlePollInterval = max(.milliseconds(1), outboxSettlePollInterval)
        self.subscriberSampleInterval = max(.milliseconds(10), subscriberSampleInterval)
    }
}
