import Logging
import Metrics
import NIOCore

/// What every connection of one client reports about its outbox and its links, kept once for
/// the classic and the sharded client: the gauges, the drop counter and its log lines, and how
/// long each backlog waited for the subscribers after an outage.
///
/// Confined to the client's event loop.
final class RedisClientMetrics {
    /// Publishes dropped because an outbox was full, over the client's lifetime.
    private(set) var dropped = 0
    /// Publishes waiting in the client's outboxes.
    private(set) var queued = 0
    /// Drops since the last backlog went out, reported once it did.
    private var droppedThisOutage = 0

    private let logger: Logger
    private let outboxLimit: Int
    /// 1 while the client is connected, else 0.
    private let connectedGauge: Gauge
    private let outboxGauge: Gauge
    private let outboxDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "outbox_overflow")])
    /// From the links being back to the backlog going out, by why the wait ended; the count of
    /// each is the number of backlogs sent for that reason.
    private let settleTimes: [RedisPublishGate.FlushReason: Metrics.Timer] = [
        .subscribersBack: Metrics.Timer(label: "sidecast_redis_outbox_settle_seconds", dimensions: [("reason", RedisPublishGate.FlushReason.subscribersBack.rawValue)]),
        .bound: Metrics.Timer(label: "sidecast_redis_outbox_settle_seconds", dimensions: [("reason", RedisPublishGate.FlushReason.bound.rawValue)]),
    ]

    /// The gauges are `<gaugePrefix>_connected` and `<gaugePrefix>_outbox_length`: a second
    /// client of the node names its own, or the two would overwrite each other's values (a
    /// label cannot tell them apart: the registry refuses a labeled series beside an
    /// unlabeled one). Drops and settle times add up across clients and stay shared.
    init(outboxLimit: Int, gaugePrefix: String = "sidecast_redis", logger: Logger) {
        self.outboxLimit = outboxLimit
        self.logger = logger
        connectedGauge = Gauge(label: "\(gaugePrefix)_connected")
        outboxGauge = Gauge(label: "\(gaugePrefix)_outbox_length")
    }

    func connectivityChanged(_ connected: Bool) {
        self.connectedGauge.record(connected ? 1 : 0)
    }

    /// One connection's outbox grew or shrank by `delta`.
    func queuedChanged(by delta: Int) {
        guard delta != 0 else { return }
        self.queued += delta
        self.outboxGauge.record(self.queued)
    }

    func didDrop(_ count: Int) {
        guard count > 0 else { return }
        if self.droppedThisOutage == 0 {
            self.logger.warning(
                "Redis outbox is full; dropping the oldest publishes until Redis is back",
                metadata: ["redis.outbox-limit": "\(self.outboxLimit)"]
            )
        }
        self.droppedThisOutage += count
        self.dropped += count
        self.outboxDrops.increment(by: Int64(count))
    }

    /// A backlog went out: how long it waited and why, and the drops it could not include.
    func didFlush(_ flush: RedisPublishGate.Flush, logger: Logger) {
        self.settleTimes[flush.reason]?.recordNanoseconds(flush.waited.nanoseconds)
        if self.droppedThisOutage > 0 {
            logger.warning(
                "dropped publishes while Redis was unreachable",
                metadata: ["redis.dropped": "\(self.droppedThisOutage)", "redis.dropped-total": "\(self.dropped)"]
            )
            self.droppedThisOutage = 0
        }
        logger.info("sending publishes queued while Redis was unreachable", metadata: [
            "redis.queued": "\(flush.entries.count)", "redis.settle-reason": "\(flush.reason.rawValue)",
            "redis.settle-ms": "\(flush.waited.nanoseconds / 1_000_000)",
        ])
    }
}
