import Logging
import Metrics
import NIOCore

/// A Redis client that survives Redis outages: one link for commands and publishes, one for
/// subscriptions (RESP2 cannot mix them), each reconnecting on its own with backoff.
///
/// While Redis is unreachable, publishes wait in a bounded outbox and go out in order once both
/// links are back and Redis counts again the subscribers it counted before (the other nodes
/// resubscribed), or the settle bound passed; other commands fail at once with
/// ``RedisClientError/notConnected``. Subscriptions are remembered and restored on every
/// reconnect. The links, outbox and restore are a ``RedisPubSubConnection``, as in
/// ``RedisShardedClient``.
///
/// Both links follow the ``RedisTopology``: in Sentinel mode they connect to the current master
/// and move when Sentinel promotes another; in Cluster mode they share any reachable node and
/// move to another when it fails.
///
/// Confined to one event loop (the caller's); call every method on it. The loop must come from a
/// `MultiThreadedEventLoopGroup`, which NIO's socket bootstraps need.
public final class RedisClient {
    public typealias MessageHandler = (_ channel: String, _ message: ByteBuffer) -> Void
    public typealias PatternMessageHandler = (_ pattern: String, _ channel: String, _ message: ByteBuffer) -> Void

    /// How the links find their node.
    private enum Discovery {
        case standalone
        case sentinel(RedisSentinelDiscovery, events: RedisLink)
        /// With a kept command link to every node, to count subscribers cluster-wide.
        case cluster(RedisClusterDiscovery)
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
    private let metrics: RedisClientMetrics
    private let connection: RedisPubSubConnection
    private let discovery: Discovery
    private var state: State = .idle
    /// When the command link was lost or a failover began, and the node it used then; both
    /// cleared once the client is connected again, to log how long the move took.
    private var outage: (since: NIODeadline, node: RedisURL?)?
    private var reportedConnected = false
    /// Cluster mode: one command link per node the last node list names as reachable.
    private var nodeLinks: [RedisEndpoint: RedisNodeLink] = [:]

    private var channelHandlers: [String: MessageHandler] = [:]
    private var patternHandlers: [String: PatternMessageHandler] = [:]

    /// `gaugePrefix` names the connected and outbox gauges of a client that is not the node's
    /// cluster link (see `RedisClientMetrics`).
    public init(configuration: RedisClientConfiguration, eventLoop: EventLoop, gaugePrefix: String = "sidecast_redis", logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.metrics = RedisClientMetrics(outboxLimit: configuration.outboxLimit, gaugePrefix: gaugePrefix, logger: logger)
        self.connection = RedisPubSubConnection(
            flavor: .classic, configuration: configuration, eventLoop: eventLoop, metrics: self.metrics, logger: logger
        )
        switch configuration.topology {
        case .standalone:
            self.discovery = .standalone
        case .sentinel(let masterName, let sentinels):
            let sentinel = RedisSentinelDiscovery(
                masterName: masterName, sentinels: sentinels, credentials: configuration.url,
                sentinelUser: configuration.sentinelUser, sentinelPassword: configuration.sentinelPassword,
                eventLoop: eventLoop, timeout: configuration.connectTimeout, logger: logger
            )
            let events = RedisLink(role: .sentinel, configuration: configuration, eventLoop: eventLoop, logger: logger)
            self.discovery = .sentinel(sentinel, events: events)
        case .cluster(let seeds):
            self.discovery = .cluster(RedisClusterDiscovery(
                seeds: seeds, credentials: configuration.url, eventLoop: eventLoop,
                timeout: configuration.connectTimeout, refreshInterval: configuration.clusterRefreshInterval, logger: logger
            ))
        }
        self.connection.owner = self
        switch self.discovery {
        case .standalone:
            break
        case .sentinel(_, let events):
            events.delegate = self
        case .cluster(let cluster):
            cluster.onUpdate = { [weak self] in self?.keepNodeLinks() }
        }
    }

    /// Both links are up and every subscription is active on Redis.
    public var isConnected: Bool {
        self.connection.isConnected
    }

    /// The node the command link is connected to, nil while it is down: in Sentinel mode the
    /// master, in Cluster mode the node in use.
    public var currentNode: RedisEndpoint? {
        self.connection.connectedURL?.endpoint
    }

    /// Publishes dropped because the outbox was full, over the client's lifetime.
    public var droppedPublishes: Int { self.metrics.dropped }

    /// Publishes waiting for Redis.
    public var outboxCount: Int { self.connection.outboxCount }

    /// Starts connecting both links and returns at once; failures are retried in the background.
    public func start() {
        self.eventLoop.preconditionInEventLoop()
        guard case .idle = self.state else { return }
        self.state = .running
        switch self.discovery {
        case .standalone:
            break
        case .sentinel(_, let events):
            events.start()
        case .cluster(let cluster):
            cluster.start()
        }
        self.connection.start()
    }

    /// Sends what the outbox holds if Redis is reachable, waits for Redis to have handled it,
    /// then closes both links. Publishes still queued are dropped (and logged).
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
        var closing: [EventLoopFuture<Void>] = [
            self.connection.close().assumeIsolated().map { undelivered in
                if !undelivered.isEmpty {
                    self.logger.warning("Redis client shut down with undelivered publishes", metadata: ["redis.undelivered": "\(undelivered.count)"])
                }
            }.nonisolated()
        ]
        switch self.discovery {
        case .standalone:
            break
        case .sentinel(_, let events):
            closing.append(events.close())
        case .cluster(let cluster):
            cluster.stop()
            closing += self.nodeLinks.values.map { $0.close() }
            self.nodeLinks.removeAll()
        }
        let future = EventLoopFuture.andAllComplete(closing, on: self.eventLoop).assumeIsolated().map {
            self.state = .shutDown
        }.nonisolated()
        self.state = .shuttingDown(future)
        return future
    }

    /// Publishes now if Redis is reachable, otherwise queues the message in the outbox.
    public func publish(_ channel: String, _ message: ByteBuffer) {
        self.eventLoop.preconditionInEventLoop()
        switch self.state {
        case .idle, .running:
            break
        case .shuttingDown, .shutDown:
            self.logger.debug("publish after shutdown dropped", metadata: ["redis.channel": "\(channel)"])
            return
        }
        self.connection.publish(channel, message)
    }

    /// Sends a command and returns Redis's reply (an error reply is a ``RedisReply/error(_:)`` value);
    /// fails at once with ``RedisClientError/notConnected`` while the command link is down.
    public func send(_ arguments: [ByteBuffer]) -> EventLoopFuture<RedisReply> {
        self.eventLoop.preconditionInEventLoop()
        switch self.state {
        case .running:
            break
        case .idle:
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        case .shuttingDown, .shutDown:
            return self.eventLoop.makeFailedFuture(RedisClientError.shutDown)
        }
        guard !arguments.isEmpty else {
            return self.eventLoop.makeFailedFuture(RedisClientError.emptyCommand)
        }
        return self.connection.send(RedisCommand(arguments))
    }

    /// Sends a command given as text arguments, for example `send("PUBSUB", "NUMSUB", "room")`.
    public func send(_ command: String, _ arguments: String...) -> EventLoopFuture<RedisReply> {
        self.send(([command] + arguments).map { ByteBuffer(string: $0) })
    }

    /// How many connections subscribe to `channel`: `PUBSUB NUMSUB` on the server, or in Cluster
    /// mode its sum over every node, since each node counts only its own subscribers.
    public func subscriberCount(of channel: String) -> EventLoopFuture<Int> {
        self.eventLoop.preconditionInEventLoop()
        guard case .running = self.state else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        return self.subscriberCounts(of: [channel]).map { $0[channel, default: 0] }
    }

    /// `PUBSUB NUMSUB` for several channels at once, summed over every node in Cluster mode.
    private func subscriberCounts(of channels: [String]) -> EventLoopFuture<[String: Int]> {
        guard case .cluster(let cluster) = self.discovery else {
            return self.connection.countSubscribers(of: channels)
        }
        guard self.connection.connectedURL != nil else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        self.keepNodeLinks()
        let numsub = RedisCommand(["PUBSUB", "NUMSUB"] + channels)
        let counts = cluster.reachableNodes.map { node -> EventLoopFuture<[String: Int]?> in
            let reply: EventLoopFuture<RedisReply>
            if let link = self.nodeLinks[node], link.isConnected {
                reply = link.send(numsub)
            } else {
                // A node whose kept link is not up (yet) is asked once over a short-lived connection.
                reply = RedisProbe.send([numsub], to: node.url(loggingInAs: self.configuration.url), on: self.eventLoop,
                                        timeout: self.configuration.connectTimeout, logger: self.logger)
                    .flatMapThrowing { replies in
                        guard let reply = replies.first else { throw RedisClientError.connectionClosed }
                        return reply
                    }
            }
            return reply.flatMapThrowing { try RedisPubSubConnection.subscriberCounts($0, subcommand: "NUMSUB") }
                .map { Optional($0) }
                // A node that cannot be asked has no subscriber this client could reach either.
                .recover { _ in nil }
        }
        return EventLoopFuture.whenAllSucceed(counts, on: self.eventLoop).flatMapThrowing { counts in
            let answered = counts.compactMap { $0 }
            guard !answered.isEmpty else { throw RedisClientError.notConnected }
            return answered.reduce(into: [:]) { total, counts in total.merge(counts, uniquingKeysWith: +) }
        }
    }

    /// Cluster mode: a kept link to every node the node list names as reachable, and none to
    /// the others.
    private func keepNodeLinks() {
        guard case .running = self.state, case .cluster(let cluster) = self.discovery else { return }
        let nodes = Set(cluster.reachableNodes)
        for node in nodes where self.nodeLinks[node] == nil {
            let link = RedisNodeLink(
                url: node.url(loggingInAs: self.configuration.url), configuration: self.configuration,
                eventLoop: self.eventLoop, logger: self.logger
            )
            self.nodeLinks[node] = link
            link.start()
        }
        for (node, link) in self.nodeLinks where !nodes.contains(node) {
            self.nodeLinks[node] = nil
            _ = link.close()
        }
    }

    /// Subscribes to a channel, replacing an earlier handler for it; kept across reconnects.
    public func subscribe(_ channel: String, handler: @escaping MessageHandler) {
        self.eventLoop.preconditionInEventLoop()
        self.channelHandlers[channel] = handler
        self.connection.subscribe(channel)
    }

    /// Subscribes to a glob-style pattern, replacing an earlier handler for it; kept across reconnects.
    public func psubscribe(_ pattern: String, handler: @escaping PatternMessageHandler) {
        self.eventLoop.preconditionInEventLoop()
        self.patternHandlers[pattern] = handler
        self.connection.psubscribe(pattern)
    }

    public func unsubscribe(_ channel: String) {
        self.eventLoop.preconditionInEventLoop()
        if self.channelHandlers.removeValue(forKey: channel) != nil {
            self.connection.unsubscribe(channel)
        }
    }

    public func punsubscribe(_ pattern: String) {
        self.eventLoop.preconditionInEventLoop()
        if self.patternHandlers.removeValue(forKey: pattern) != nil {
            self.connection.punsubscribe(pattern)
        }
    }

    // MARK: - Failover

    /// Subscribes the Sentinel event link to master switches.
    private func prepareSentinelEvents(on channel: Channel) -> EventLoopFuture<Void> {
        let ready = channel.eventLoop.makePromise(of: Void.self)
        do {
            let pipeline = channel.pipeline.syncOperations
            pipeline.removeHandler(try pipeline.handler(type: RedisCommandHandler.self), promise: nil)
            try pipeline.addHandler(RedisPubSubHandler(ready: ready) { [weak self] message in
                guard case .message("+switch-master", let payload) = message else { return }
                self?.sentinelSwitchedMaster(String(buffer: payload))
            })
        } catch {
            ready.fail(error)
            return ready.futureResult
        }
        channel.write(RedisCommand(["SUBSCRIBE", "+switch-master"]), promise: nil)
        channel.writeAndFlush(RedisCommand(["PING"]), promise: nil)
        return ready.futureResult
    }

    private func sentinelSwitchedMaster(_ payload: String) {
        guard case .sentinel(let sentinel, _) = self.discovery, let switched = sentinel.switched(payload) else { return }
        self.logger.warning("Redis Sentinel promoted a new master; moving to it", metadata: [
            "redis.master-name": "\(sentinel.masterName)", "redis.old-master": "\(switched.from)", "redis.new-master": "\(switched.to)",
        ])
        if self.outage == nil { self.outage = (.now(), self.connection.commandTarget?.url) }
        self.connection.reconnect(unlessAt: switched.to, because: "the master is now \(switched.to)")
    }

    /// Asks the sentinels for the master and moves the links there if they are elsewhere.
    private func followSentinelMaster() {
        guard case .sentinel(let sentinel, _) = self.discovery else { return }
        sentinel.resolveMaster().assumeIsolated().whenSuccess { master in
            self.connection.reconnect(unlessAt: master, because: "the master is now \(master)")
        }
    }

    private func logRecovery(from outage: (since: NIODeadline, node: RedisURL?)) {
        let milliseconds = (NIODeadline.now() - outage.since).nanoseconds / 1_000_000
        let node = self.connection.connectedURL
        if let node, let previous = outage.node, node.endpoint != previous.endpoint {
            self.logger.notice("Redis failover complete", metadata: [
                "redis.node": "\(node)", "redis.previous-node": "\(previous)", "redis.failover-ms": "\(milliseconds)",
            ])
        } else {
            self.logger.info("Redis reachable again", metadata: [
                "redis.node": "\(node.map { "\($0)" } ?? "?")", "redis.outage-ms": "\(milliseconds)",
            ])
        }
    }
}

extension RedisClient: RedisPubSubConnectionOwner {
    func connectionTarget(_ connection: RedisPubSubConnection, link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        switch self.discovery {
        case .standalone:
            return self.eventLoop.makeSucceededFuture(RedisTarget(url: self.configuration.url))
        case .sentinel(let sentinel, _):
            return sentinel.masterTarget()
        case .cluster(let cluster):
            return cluster.target(failed: failed)
        }
    }

    func connection(_ connection: RedisPubSubConnection, countSubscribersOf channels: [String]) -> EventLoopFuture<[String: Int]> {
        self.subscriberCounts(of: channels)
    }

    func connectionConnectivityChanged(_ connection: RedisPubSubConnection, lostLink: Bool) {
        let connected = self.isConnected
        guard connected != self.reportedConnected else { return }
        self.reportedConnected = connected
        self.metrics.connectivityChanged(connected)
        if !connected, self.outage == nil {
            self.outage = (.now(), connection.commandTarget?.url)
        }
        if connected, let outage = self.outage {
            self.outage = nil
            self.logRecovery(from: outage)
        }
        self.onStateChange?(connected)
    }

    func connection(_ connection: RedisPubSubConnection, received message: RedisPubSubMessage) {
        switch message {
        case .message(let channel, let payload):
            self.channelHandlers[channel]?(channel, payload)
        case .patternMessage(let pattern, let channel, let payload):
            self.patternHandlers[pattern]?(pattern, channel, payload)
        }
    }

    func connection(_ connection: RedisPubSubConnection, refused channel: String, message: ByteBuffer, error: String) {
        self.logger.warning("Redis refused a publish", metadata: ["redis.error": "\(error)", "redis.channel": "\(channel)"])
    }
}

/// The Sentinel event link, the one link the client drives itself.
extension RedisClient: RedisLinkDelegate {
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        guard case .sentinel(let sentinel, _) = self.discovery else {
            return self.eventLoop.makeFailedFuture(RedisClientError.shutDown)
        }
        return self.eventLoop.makeSucceededFuture(sentinel.sentinelTarget(failed: failed))
    }

    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void> {
        self.prepareSentinelEvents(on: channel)
    }

    func linkDidConnect(_ link: RedisLink, channel: Channel) {
        // A switch may have happened while no sentinel was listened to.
        self.followSentinelMaster()
    }

    func linkDidDisconnect(_ link: RedisLink) {}
}
