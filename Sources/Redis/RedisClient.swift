import Logging
import Metrics
import NIOCore

/// A Redis client that survives Redis outages: one link for commands and publishes, one for
/// subscriptions (RESP2 cannot mix them), each reconnecting on its own with backoff.
///
/// While Redis is unreachable, publishes wait in a bounded outbox and go out in order once both
/// links are back; other commands fail at once with ``RedisClientError/notConnected``.
/// Subscriptions are remembered and restored on every reconnect.
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
    private let commandLink: RedisLink
    private let subscriptionLink: RedisLink
    private let discovery: Discovery
    private var state: State = .idle
    private var outbox: RedisOutbox
    /// Drops since the last reconnect, reported once the link is back.
    private var droppedThisOutage = 0
    /// When the command link was lost or a failover began, and the node it used then; both
    /// cleared once the client is connected again, to log how long the move took.
    private var outage: (since: NIODeadline, node: RedisURL?)?

    /// The command link's channel while it is up.
    private var commandChannel: Channel?
    /// The subscription link's channel from the moment subscriptions are restored on it, so a
    /// subscribe made while the restore is in flight still reaches Redis.
    private var subscriptionChannel: Channel?
    private var subscriptionsReady = false
    private var reportedConnected = false
    private var flushScheduled = false

    private var channelHandlers: [String: MessageHandler] = [:]
    private var patternHandlers: [String: PatternMessageHandler] = [:]

    /// 1 while ``isConnected``, else 0.
    private let connectedGauge = Gauge(label: "sidecast_redis_connected")
    private let outboxGauge = Gauge(label: "sidecast_redis_outbox_length")
    private let outboxDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "outbox_overflow")])

    public init(configuration: RedisClientConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.outbox = RedisOutbox(limit: configuration.outboxLimit)
        self.commandLink = RedisLink(role: .commands, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.subscriptionLink = RedisLink(role: .subscriptions, configuration: configuration, eventLoop: eventLoop, logger: logger)
        switch configuration.topology {
        case .standalone:
            self.discovery = .standalone
        case .sentinel(let masterName, let sentinels):
            let sentinel = RedisSentinelDiscovery(
                masterName: masterName, sentinels: sentinels, credentials: configuration.url,
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
        self.commandLink.delegate = self
        self.subscriptionLink.delegate = self
        if case .sentinel(_, let events) = self.discovery { events.delegate = self }
    }

    /// Both links are up and every subscription is active on Redis.
    public var isConnected: Bool {
        self.commandChannel != nil && self.subscriptionsReady
    }

    /// The node the command link is connected to, nil while it is down: in Sentinel mode the
    /// master, in Cluster mode the node in use.
    public var currentNode: RedisEndpoint? {
        self.commandLink.connectedURL?.endpoint
    }

    /// Publishes dropped because the outbox was full, over the client's lifetime.
    public var droppedPublishes: Int { self.outbox.dropped }

    /// Publishes waiting for Redis.
    public var outboxCount: Int { self.outbox.count }

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
        self.commandLink.start()
        self.subscriptionLink.start()
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
        let drained = self.drainForShutdown()
        let future = drained.assumeIsolated()
            .flatMap { () -> EventLoopFuture<Void> in
                var links = [self.commandLink.close(), self.subscriptionLink.close()]
                switch self.discovery {
                case .standalone:
                    break
                case .sentinel(_, let events):
                    links.append(events.close())
                case .cluster(let cluster):
                    cluster.stop()
                }
                return EventLoopFuture.andAllComplete(links, on: self.eventLoop)
            }
            .map {
                if self.outbox.count > 0 {
                    self.logger.warning("Redis client shut down with undelivered publishes", metadata: ["redis.undelivered": "\(self.outbox.count)"])
                    _ = self.outbox.removeAll()
                    self.outboxGauge.record(0)
                }
                self.state = .shutDown
            }
            .nonisolated()
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
        // While queued publishes wait to go out, new ones queue behind them to keep the order.
        // A link that closed but was not reported down yet takes nothing: the publish would be lost.
        if self.isConnected, self.outbox.count == 0, let connection = self.commandChannel, connection.isActive {
            self.write(.publish(channel, message), to: connection)
        } else {
            self.enqueue(channel: channel, message: message)
        }
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
        guard let connection = self.commandChannel else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        let reply = self.eventLoop.makePromise(of: RedisReply.self)
        // A write that never reaches the command handler (the channel just closed) fails here.
        connection.writeAndFlush(RedisCommandRequest(command: RedisCommand(arguments), reply: reply)).whenFailure {
            reply.fail($0)
        }
        return reply.futureResult
    }

    /// Sends a command given as text arguments, for example `send("PUBSUB", "NUMSUB", "room")`.
    public func send(_ command: String, _ arguments: String...) -> EventLoopFuture<RedisReply> {
        self.send(([command] + arguments).map { ByteBuffer(string: $0) })
    }

    /// How many connections subscribe to `channel`: `PUBSUB NUMSUB` on the server, or in Cluster
    /// mode its sum over every node, since each node counts only its own subscribers.
    public func subscriberCount(of channel: String) -> EventLoopFuture<Int> {
        guard case .cluster(let cluster) = self.discovery else {
            return self.send("PUBSUB", "NUMSUB", channel).flatMapThrowing { try Self.numsub($0) }
        }
        guard let reporter = self.commandLink.connectedURL?.endpoint else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        let numsub = RedisCommand(["PUBSUB", "NUMSUB", channel])
        return self.send("CLUSTER", "NODES").assumeIsolated()
            .flatMapThrowing { reply in try cluster.update(reply, reportedBy: reporter) }
            .flatMap { () -> EventLoopFuture<Int> in
                let counts = cluster.reachableNodes.map { node in
                    RedisProbe.send([numsub], to: node.url(loggingInAs: self.configuration.url), on: self.eventLoop,
                                    timeout: self.configuration.connectTimeout, logger: self.logger)
                        .flatMapThrowing { replies -> Int in
                            guard let reply = replies.first else { throw RedisClientError.connectionClosed }
                            return try Self.numsub(reply)
                        }
                        .map { Optional($0) }
                        // A node that cannot be asked has no subscriber this client could reach either.
                        .recover { _ in nil }
                }
                return EventLoopFuture.whenAllSucceed(counts, on: self.eventLoop).flatMapThrowing { counts in
                    let answered = counts.compactMap { $0 }
                    guard !answered.isEmpty else { throw RedisClientError.notConnected }
                    return answered.reduce(0, +)
                }
            }
            .nonisolated()
    }

    private static func numsub(_ reply: RedisReply) throws -> Int {
        guard let array = reply.array, array.count == 2, let count = array[1].integer else {
            throw RedisClientError.protocolError("unexpected PUBSUB NUMSUB answer: \(reply)")
        }
        return Int(count)
    }

    /// Subscribes to a channel, replacing an earlier handler for it; kept across reconnects.
    public func subscribe(_ channel: String, handler: @escaping MessageHandler) {
        self.eventLoop.preconditionInEventLoop()
        if self.channelHandlers.updateValue(handler, forKey: channel) == nil {
            self.sendSubscriptionCommand(["SUBSCRIBE", channel])
        }
    }

    /// Subscribes to a glob-style pattern, replacing an earlier handler for it; kept across reconnects.
    public func psubscribe(_ pattern: String, handler: @escaping PatternMessageHandler) {
        self.eventLoop.preconditionInEventLoop()
        if self.patternHandlers.updateValue(handler, forKey: pattern) == nil {
            self.sendSubscriptionCommand(["PSUBSCRIBE", pattern])
        }
    }

    public func unsubscribe(_ channel: String) {
        self.eventLoop.preconditionInEventLoop()
        if self.channelHandlers.removeValue(forKey: channel) != nil {
            self.sendSubscriptionCommand(["UNSUBSCRIBE", channel])
        }
    }

    public func punsubscribe(_ pattern: String) {
        self.eventLoop.preconditionInEventLoop()
        if self.patternHandlers.removeValue(forKey: pattern) != nil {
            self.sendSubscriptionCommand(["PUNSUBSCRIBE", pattern])
        }
    }

    // MARK: - Publishing

    private func enqueue(channel: String, message: ByteBuffer) {
        let kept = self.outbox.append(channel: channel, message: message)
        self.outboxGauge.record(self.outbox.count)
        if !kept {
            self.outboxDrops.increment()
            if self.droppedThisOutage == 0 {
                self.logger.warning(
                    "Redis outbox is full; dropping the oldest publishes until Redis is back",
                    metadata: ["redis.outbox-limit": "\(self.outbox.limit)"]
                )
            }
            self.droppedThisOutage += 1
        }
    }

    /// Writes now and flushes once per event loop tick, so a burst of publishes shares a syscall.
    private func write(_ command: RedisCommand, to connection: Channel) {
        connection.write(RedisCommandRequest(command: command, reply: nil), promise: nil)
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            connection.flush()
        }
    }

    /// Takes back publishes a lost connection never confirmed: at least once beats at most once
    /// for a broadcast that the other nodes would otherwise never see.
    private func requeue(_ commands: [RedisCommand]) {
        let entries = commands.compactMap { command -> RedisOutbox.Entry? in
            guard command.arguments.count == 3 else { return nil }
            return RedisOutbox.Entry(channel: String(buffer: command.arguments[1]), message: command.arguments[2])
        }
        guard !entries.isEmpty else { return }
        self.logger.info("queueing again publishes Redis never confirmed", metadata: ["redis.requeued": "\(entries.count)"])
        self.outbox.requeue(entries)
        self.outboxGauge.record(self.outbox.count)
    }

    /// Sends the outbox once the other nodes have had time to resubscribe (see
    /// ``RedisClientConfiguration/outboxSettleDelay``), if the links are still up then.
    private func scheduleOutboxFlush() {
        self.logger.info(
            "Redis is back; sending queued publishes once other nodes had time to resubscribe",
            metadata: ["redis.queued": "\(self.outbox.count)", "redis.settle": "\(self.configuration.outboxSettleDelay)"]
        )
        self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.outboxSettleDelay) {
            guard self.isConnected, let connection = self.commandChannel else { return }
            self.flushOutbox(to: connection)
        }
    }

    private func flushOutbox(to connection: Channel) {
        if self.droppedThisOutage > 0 {
            self.logger.warning(
                "dropped publishes while Redis was unreachable",
                metadata: ["redis.dropped": "\(self.droppedThisOutage)", "redis.dropped-total": "\(self.outbox.dropped)"]
            )
            self.droppedThisOutage = 0
        }
        let queued = self.outbox.removeAll()
        self.outboxGauge.record(0)
        guard !queued.isEmpty else { return }
        self.logger.info("sending publishes queued while Redis was unreachable", metadata: ["redis.queued": "\(queued.count)"])
        for entry in queued {
            connection.write(RedisCommandRequest(command: .publish(entry.channel, entry.message), reply: nil), promise: nil)
        }
        connection.flush()
    }

    /// Flushes the outbox and waits for a PING to come back: Redis answers in order, so by then
    /// it has handled every publish written before.
    private func drainForShutdown() -> EventLoopFuture<Void> {
        guard let connection = self.commandChannel else {
            return self.eventLoop.makeSucceededVoidFuture()
        }
        self.flushOutbox(to: connection)
        let done = self.eventLoop.makePromise(of: Void.self)
        let timeout = self.eventLoop.scheduleTask(in: self.configuration.connectTimeout) {
            done.fail(RedisClientError.timedOut)
        }
        self.send("PING").whenComplete { _ in
            timeout.cancel()
            done.succeed()
        }
        return done.futureResult.recover { _ in }
    }

    // MARK: - Subscriptions

    private func sendSubscriptionCommand(_ arguments: [String]) {
        self.subscriptionChannel?.writeAndFlush(RedisCommand(arguments), promise: nil)
    }

    /// Swaps the command handler used for AUTH/SELECT for the pub/sub handler, restores every
    /// subscription, and completes once Redis answered the PING written after them.
    private func prepareSubscriptions(on channel: Channel) -> EventLoopFuture<Void> {
        let ready = channel.eventLoop.makePromise(of: Void.self)
        do {
            let pipeline = channel.pipeline.syncOperations
            let commandHandler = try pipeline.handler(type: RedisCommandHandler.self)
            pipeline.removeHandler(commandHandler, promise: nil)
            try pipeline.addHandler(RedisPubSubHandler(ready: ready) { [weak self] message in
                self?.deliver(message)
            })
        } catch {
            ready.fail(error)
            return ready.futureResult
        }
        self.subscriptionChannel = channel
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            if self.subscriptionChannel === channel { self.subscriptionChannel = nil }
        }
        if !self.channelHandlers.isEmpty {
            channel.write(RedisCommand(["SUBSCRIBE"] + self.channelHandlers.keys.sorted()), promise: nil)
        }
        if !self.patternHandlers.isEmpty {
            channel.write(RedisCommand(["PSUBSCRIBE"] + self.patternHandlers.keys.sorted()), promise: nil)
        }
        channel.writeAndFlush(RedisCommand(["PING"]), promise: nil)
        return ready.futureResult
    }

    private func deliver(_ message: RedisPubSubMessage) {
        switch message {
        case .message(let channel, let payload):
            self.channelHandlers[channel]?(channel, payload)
        case .patternMessage(let pattern, let channel, let payload):
            self.patternHandlers[pattern]?(pattern, channel, payload)
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
        if self.outage == nil { self.outage = (.now(), self.commandLink.target?.url) }
        self.follow(switched.to)
    }

    /// Asks the sentinels for the master and moves the links there if they are elsewhere.
    private func followSentinelMaster() {
        guard case .sentinel(let sentinel, _) = self.discovery else { return }
        sentinel.resolveMaster().assumeIsolated().whenSuccess { master in self.follow(master) }
    }

    private func follow(_ master: RedisEndpoint) {
        for link in [self.commandLink, self.subscriptionLink] where link.connectedURL?.endpoint != master {
            link.reconnect(because: "the master is now \(master)")
        }
    }

    private func logRecovery(from outage: (since: NIODeadline, node: RedisURL?)) {
        let milliseconds = (NIODeadline.now() - outage.since).nanoseconds / 1_000_000
        let node = self.commandLink.connectedURL
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

    // MARK: - Connectivity

    private func connectivityChanged() {
        let connected = self.isConnected
        guard connected != self.reportedConnected else { return }
        self.reportedConnected = connected
        self.connectedGauge.record(connected ? 1 : 0)
        if connected, let outage = self.outage {
            self.outage = nil
            self.logRecovery(from: outage)
        }
        if connected, self.outbox.count > 0 {
            self.scheduleOutboxFlush()
        }
        self.onStateChange?(connected)
    }
}

extension RedisClient: RedisLinkDelegate {
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        switch self.discovery {
        case .standalone:
            return self.eventLoop.makeSucceededFuture(RedisTarget(url: self.configuration.url))
        case .sentinel(let sentinel, _):
            if link.role == .sentinel {
                return self.eventLoop.makeSucceededFuture(sentinel.sentinelTarget(failed: failed))
            }
            return sentinel.masterTarget()
        case .cluster(let cluster):
            return cluster.target(failed: failed)
        }
    }

    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void> {
        switch link.role {
        case .commands:
            return channel.eventLoop.makeSucceededVoidFuture()
        case .subscriptions:
            return self.prepareSubscriptions(on: channel)
        case .sentinel:
            return self.prepareSentinelEvents(on: channel)
        }
    }

    func linkDidConnect(_ link: RedisLink, channel: Channel) {
        switch link.role {
        case .sentinel:
            // A switch may have happened while no sentinel was listened to.
            self.followSentinelMaster()
            return
        case .commands:
            self.commandChannel = channel
            if let handler = try? channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self) {
                handler.onUnansweredPublishes = { [weak self] commands in self?.requeue(commands) }
            }
        case .subscriptions:
            self.subscriptionChannel = channel
            self.subscriptionsReady = true
        }
        self.connectivityChanged()
    }

    func linkDidDisconnect(_ link: RedisLink) {
        switch link.role {
        case .sentinel:
            return
        case .commands:
            self.commandChannel = nil
            if self.outage == nil { self.outage = (.now(), link.target?.url) }
        case .subscriptions:
            self.subscriptionChannel = nil
            self.subscriptionsReady = false
        }
        self.connectivityChanged()
    }
}
