import Logging
import Metrics
import NIOCore

/// Sharded pub/sub (Redis 7 `SPUBLISH`/`SSUBSCRIBE`) over a Redis Cluster or one Redis 7 server.
///
/// A shard channel lives on the master owning its hash slot, so unlike classic pub/sub a
/// message only crosses the shard that owns its channel. The client reads the slot map
/// (`CLUSTER SLOTS`) from the seeds, keeps one ``RedisShard`` (a publish link and a
/// subscription link, a ``RedisPubSubConnection``) per master it needs, publishes each message on its channel's master and
/// subscribes each channel there. A `MOVED` answer moves the slot and sends the publish again;
/// a lost link, and a timer, make it read the map again, so after a failover the subscriptions
/// and the queued publishes follow the slots to the promoted master.
///
/// Publishes for a master that is down wait in that shard's outbox, bounded and released after
/// an outage as in ``RedisClient``. Confined to one event loop (the caller's); call every method on it.
public final class RedisShardedClient {
    public typealias MessageHandler = (_ channel: String, _ message: ByteBuffer) -> Void

    private enum Layout {
        /// One Redis 7 server holds every slot.
        case standalone
        case cluster(seeds: [RedisEndpoint])
    }

    private enum State {
        case idle
        case running
        case shuttingDown(EventLoopFuture<Void>)
        case shutDown
    }

    public let eventLoop: EventLoop
    /// Called on the event loop when ``isConnected`` changes.
    public var onStateChange: ((Bool) -> Void)?

    private let configuration: RedisClientConfiguration
    private let logger: Logger
    private let layout: Layout
    private var state: State = .idle
    private var slots: RedisSlotMap?
    private var shards: [RedisEndpoint: RedisPubSubConnection] = [:]
    private var handlers: [String: MessageHandler] = [:]
    /// Publishes made before the first slot map was read.
    private var unrouted: RedisOutbox
    private var refreshing: EventLoopFuture<Void>?
    private var refreshTimer: Scheduled<Void>?
    private var reportedConnected = false
    private let metrics: RedisClientMetrics

    /// Fails for a Sentinel topology: Sentinel has no sharded pub/sub of its own.
    public init(configuration: RedisClientConfiguration, eventLoop: EventLoop, logger: Logger) throws {
        switch configuration.topology {
        case .standalone:
            guard let endpoint = configuration.url.endpoint else {
                throw RedisURLError("sharded pub/sub needs a TCP address, not a Unix socket")
            }
            self.layout = .standalone
            self.slots = .single(endpoint)
        case .cluster(let seeds):
            self.layout = .cluster(seeds: seeds)
        case .sentinel:
            throw RedisURLError("sharded pub/sub needs a Redis Cluster or one Redis 7 server, not Sentinel")
        }
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.unrouted = RedisOutbox(limit: configuration.outboxLimit)
        self.metrics = RedisClientMetrics(outboxLimit: configuration.outboxLimit, logger: logger)
    }

    /// Every master of the slot map has both links up and its subscriptions active.
    public var isConnected: Bool {
        guard let slots = self.slots else { return false }
        return slots.masters.allSatisfy { self.shards[$0]?.isConnected == true }
    }

    /// Publishes waiting for Redis, over every shard.
    public var outboxCount: Int {
        self.unrouted.count + self.shards.values.reduce(0) { $0 + $1.outboxCount }
    }

    /// Publishes dropped because an outbox was full, over the client's lifetime.
    public var droppedPublishes: Int { self.metrics.dropped }

    public func start() {
        self.eventLoop.preconditionInEventLoop()
        guard case .idle = self.state else { return }
        self.state = .running
        switch self.layout {
        case .standalone:
            self.reconcile()
        case .cluster:
            self.refreshPeriodically()
        }
    }

    /// Sends what the outboxes hold where Redis is reachable, then closes every link.
    public func shutdown() -> EventLoopFuture<Void> {
        self.eventLoop.preconditionInEventLoop()
        switch self.state {
        case .shuttingDown(let future):
            return future
        case .shutDown:
            return self.eventLoop.makeSucceededVoidFuture()
        case .idle, .running:
            break
        }
        self.refreshTimer?.cancel()
        let closing = self.shards.values.map { $0.close() }
        self.shards.removeAll()
        let future = EventLoopFuture.whenAllComplete(closing, on: self.eventLoop).assumeIsolated().map { results in
            self.metrics.queuedChanged(by: -self.unrouted.count)
            let undelivered = self.unrouted.count + results.reduce(0) { $0 + ((try? $1.get())?.count ?? 0) }
            if undelivered > 0 {
                self.logger.warning("Redis client shut down with undelivered publishes", metadata: ["redis.undelivered": "\(undelivered)"])
            }
            self.state = .shutDown
        }.nonisolated()
        self.state = .shuttingDown(future)
        return future
    }

    /// Subscribes a shard channel on the master owning its slot, kept across reconnects and
    /// failovers; replaces an earlier handler for it.
    public func ssubscribe(_ channel: String, handler: @escaping MessageHandler) {
        self.eventLoop.preconditionInEventLoop()
        guard self.handlers.updateValue(handler, forKey: channel) == nil else { return }
        if let master = self.slots?.master(of: channel), let shard = self.shards[master] {
            shard.subscribe(channel)
        } else {
            self.reconcile()
        }
    }

    public func sunsubscribe(_ channel: String) {
        self.eventLoop.preconditionInEventLoop()
        guard self.handlers.removeValue(forKey: channel) != nil else { return }
        for shard in self.shards.values { shard.unsubscribe(channel) }
    }

    /// Publishes on the master owning the channel's slot now, or queues the message for it.
    public func spublish(_ channel: String, _ message: ByteBuffer) {
        self.eventLoop.preconditionInEventLoop()
        guard case .running = self.state else {
            self.logger.debug("publish after shutdown dropped", metadata: ["redis.channel": "\(channel)"])
            return
        }
        if let master = self.slots?.master(of: channel), let shard = self.shards[master] {
            shard.publish(channel, message)
        } else {
            self.queueUnrouted(channel, message)
        }
    }

    private func queueUnrouted(_ channel: String, _ message: ByteBuffer) {
        let kept = self.unrouted.append(channel: channel, message: message)
        self.metrics.queuedChanged(by: kept ? 1 : 0)
        if !kept { self.metrics.didDrop(1) }
    }

    /// How many connections subscribe to the shard channel: `PUBSUB SHARDNUMSUB` on the master
    /// owning its slot, the only node that knows (Node's sharded adapter counts servers so).
    /// A `MOVED` answer moves the slot and asks the new master, at most `redirects` times.
    public func shardSubscriberCount(of channel: String, redirects: Int = 3) -> EventLoopFuture<Int> {
        self.eventLoop.preconditionInEventLoop()
        guard case .running = self.state else { return self.eventLoop.makeFailedFuture(RedisClientError.shutDown) }
        guard let master = self.slots?.master(of: channel), let shard = self.shards[master] else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        return shard.send(RedisCommand(["PUBSUB", "SHARDNUMSUB", channel])).assumeIsolated().flatMap { reply in
            if case .error(let error) = reply {
                guard redirects > 0, case .cluster = self.layout, let moved = Self.redirection(error) else {
                    return self.eventLoop.makeFailedFuture(RedisClientError.commandFailed(error))
                }
                self.slots?.move(slot: moved.slot, to: moved.master)
                self.reconcile()
                _ = self.refresh()
                return self.shardSubscriberCount(of: channel, redirects: redirects - 1)
            }
            guard let fields = reply.array, fields.count == 2, let count = fields[1].integer else {
                return self.eventLoop.makeFailedFuture(RedisClientError.protocolError("unexpected PUBSUB SHARDNUMSUB answer: \(reply)"))
            }
            return self.eventLoop.makeSucceededFuture(Int(count))
        }.nonisolated()
    }

    // MARK: - Slot map

    private func refreshPeriodically() {
        _ = self.refresh()
        self.refreshTimer = self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.clusterRefreshInterval) {
            self.refreshPeriodically()
        }
    }

    /// Reads `CLUSTER SLOTS` from the known masters, then the seeds; shared while in flight.
    private func refresh() -> EventLoopFuture<Void> {
        guard case .cluster(let seeds) = self.layout else { return self.eventLoop.makeSucceededVoidFuture() }
        if let refreshing = self.refreshing { return refreshing }
        var seen = Set<RedisEndpoint>()
        let candidates = ((self.slots?.masters.sorted { $0.description < $1.description } ?? []) + seeds).filter { seen.insert($0).inserted }
        let future = self.refresh(from: candidates[...])
        self.refreshing = future
        future.assumeIsolated().whenComplete { _ in self.refreshing = nil }
        return future
    }

    private func refresh(from candidates: ArraySlice<RedisEndpoint>) -> EventLoopFuture<Void> {
        guard let node = candidates.first else {
            self.logger.debug("no Redis Cluster node answered CLUSTER SLOTS")
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        return RedisProbe.send(
            [RedisCommand(["CLUSTER", "SLOTS"])], to: node.url(loggingInAs: self.configuration.url),
            on: self.eventLoop, timeout: self.configuration.connectTimeout, logger: self.logger
        )
        .assumeIsolated()
        .flatMapThrowing { replies in
            guard let reply = replies.first else { throw RedisClientError.connectionClosed }
            let map = try RedisSlotMap(clusterSlots: reply, reportedBy: node)
            if map != self.slots {
                self.logger.info("Redis Cluster slot map", metadata: [
                    "redis.masters": "\(map.masters.map(\.description).sorted())", "redis.ranges": "\(map.ranges.count)",
                ])
                self.slots = map
                self.reconcile()
            }
        }
        .flatMapError { _ in self.refresh(from: candidates.dropFirst()) }
        .nonisolated()
    }

    /// Opens a shard for every master of the map, subscribes every channel on its master,
    /// and closes the shards of nodes that own no slot any more, moving their queued
    /// publishes to the slots' new masters.
    private func reconcile() {
        guard case .running = self.state, let slots = self.slots else { return }
        let masters = slots.masters
        for master in masters where self.shards[master] == nil {
            var logger = self.logger
            logger[metadataKey: "redis.shard"] = "\(master)"
            let shard = RedisPubSubConnection(
                flavor: .sharded, configuration: self.configuration, eventLoop: self.eventLoop, metrics: self.metrics, logger: logger
            )
            shard.owner = self
            self.shards[master] = shard
            shard.start()
        }
        for (channel, _) in self.handlers {
            guard let owner = slots.master(of: channel) else { continue }
            for (endpoint, shard) in self.shards {
                if endpoint == owner { shard.subscribe(channel) } else { shard.unsubscribe(channel) }
            }
        }
        for (endpoint, shard) in self.shards where !masters.contains(endpoint) {
            self.shards[endpoint] = nil
            self.logger.info("leaving a Redis node that owns no slot now", metadata: ["redis.node": "\(endpoint)"])
            shard.close().assumeIsolated().whenSuccess { self.reroute(Array($0)) }
        }
        let unrouted = self.unrouted.removeAll()
        self.metrics.queuedChanged(by: -unrouted.count)
        self.reroute(Array(unrouted))
        self.connectivityChanged()
    }

    /// Hands queued publishes to the shards owning their slots now, keeping their order.
    private func reroute(_ entries: [RedisOutbox.Entry]) {
        guard case .running = self.state, !entries.isEmpty, let slots = self.slots else {
            if !entries.isEmpty, case .running = self.state {
                for entry in entries { self.queueUnrouted(entry.channel, entry.message) }
            }
            return
        }
        var byShard: [RedisEndpoint: [RedisOutbox.Entry]] = [:]
        for entry in entries {
            guard let master = slots.master(of: entry.channel) else { continue }
            byShard[master, default: []].append(entry)
        }
        for (master, entries) in byShard {
            guard let shard = self.shards[master] else { continue }
            shard.adopt(entries)
        }
    }

    private func connectivityChanged() {
        let connected = self.isConnected
        guard connected != self.reportedConnected else { return }
        self.reportedConnected = connected
        self.metrics.connectivityChanged(connected)
        self.onStateChange?(connected)
    }

    /// Where a `MOVED <slot> <host:port>` error sends a slot.
    private static func redirection(_ error: String) -> (slot: Int, master: RedisEndpoint)? {
        let fields = error.split(separator: " ")
        guard fields.count == 3, fields[0] == "MOVED", let slot = Int(fields[1]),
            let master = try? RedisEndpoint(String(fields[2]), defaultPort: RedisURL.defaultPort)
        else { return nil }
        return (slot, master)
    }
}

extension RedisShardedClient: RedisPubSubConnectionOwner {
    /// A shard stays on its master; a failed attempt means the slot map may be stale (a
    /// failover), so it is read again.
    func connectionTarget(_ connection: RedisPubSubConnection, link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        guard let master = self.shards.first(where: { $0.value === connection })?.key else {
            return self.eventLoop.makeFailedFuture(RedisClientError.shutDown)
        }
        if failed != nil, case .running = self.state { _ = self.refresh() }
        return self.eventLoop.makeSucceededFuture(RedisTarget(url: master.url(loggingInAs: self.configuration.url)))
    }

    func connection(_ connection: RedisPubSubConnection, countSubscribersOf channels: [String]) -> EventLoopFuture<[String: Int]> {
        connection.countSubscribers(of: channels)
    }

    func connectionConnectivityChanged(_ connection: RedisPubSubConnection, lostLink: Bool) {
        if lostLink, case .running = self.state { _ = self.refresh() }
        self.connectivityChanged()
    }

    func connection(_ connection: RedisPubSubConnection, refused channel: String, message: ByteBuffer, error: String) {
        guard case .running = self.state, case .cluster = self.layout, let moved = Self.redirection(error) else {
            self.logger.warning("Redis refused a publish", metadata: ["redis.error": "\(error)", "redis.channel": "\(channel)"])
            return
        }
        self.slots?.move(slot: moved.slot, to: moved.master)
        self.reconcile()
        self.spublish(channel, message)
        _ = self.refresh()
    }

    func connection(_ connection: RedisPubSubConnection, received message: RedisPubSubMessage) {
        guard case .message(let channel, let payload) = message else { return }
        self.handlers[channel]?(channel, payload)
    }
}
