import NIOCore

/// Where a ``RedisClient`` connects and how it behaves while Redis is unreachable.
public struct RedisClientConfiguration: Sendable {
    public var url: RedisURL
    /// Publishes kept while disconnected; past it the oldest are dropped and counted.
    public var outboxLimit: Int
    /// The first reconnect delay; it doubles after every failed attempt, up to ``maxBackoff``.
    public var minBackoff: TimeAmount
    public var maxBackoff: TimeAmount
    /// Bounds both the TCP connect and the AUTH/SELECT/SUBSCRIBE handshake that follows.
    public var connectTimeout: TimeAmount

    public init(
        url: RedisURL,
        outboxLimit: Int = 10_000,
        minBackoff: TimeAmount = .milliseconds(100),
        maxBackoff: TimeAmount = .seconds(5),
        connectTimeout: TimeAmount = .seconds(5)
    ) {
        self.url = url
        self.outboxLimit = max(0, outboxLimit)
        self.minBackoff = max(.milliseconds(1), minBackoff)
        self.maxBackoff = max(self.minBackoff, maxBackoff)
        self.connectTimeout = connectTimeout
    }
}
