import DequeModule
import Logging
import NIOCore

/// What a ``RedisPubSubConnection`` asks of, and reports to, the client that owns it.
protocol RedisPubSubConnectionOwner: AnyObject {
    /// Where a link's next attempt goes; `failed` as in ``RedisLinkDelegate/linkTarget(_:failed:)``.
    func connectionTarget(_ connection: RedisPubSubConnection, link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget>
    /// How many connections subscribe to each channel, as the cluster sees it.
    func connection(_ connection: RedisPubSubConnection, countSubscribersOf channels: [String]) -> EventLoopFuture<[String: Int]>
    /// A link came up or went down (`lostLink`); ``RedisPubSubConnection/isConnected`` tells the result.
    func connectionConnectivityChanged(_ connection: RedisPubSubConnection, lostLink: Bool)
    func connection(_ connection: RedisPubSubConnection, received message: RedisPubSubMessage)
    /// Redis answered a publish with an error, such as a `MOVED` redirection in sharded mode.
    func connection(_ connection: RedisPubSubConnection, refused channel: String, message: ByteBuffer, error: String)
}

/// The two links pub/sub needs to one Redis node, one for publishes and commands and one for
/// subscriptions (RESP2 cannot mix them), with everything that keeps them useful across
/// outages: the outbox and when it goes out (``RedisPublishGate``), publishes a lost
/// connection never confirmed taken back, and the subscriptions restored on every reconnect.
///
/// The classic client uses one, following its topology (single node, Sentinel's master, any
/// Cluster node); the sharded client one per master (SPUBLISH and SSUBSCRIBE instead).
///
/// Confined to the client's event loop.
final class RedisPubSubConnection {
    /// Which pub/sub commands the connection speaks.
    enum Flavor {
        case classic
        /// Redis 7 sharded pub/sub: a channel lives on the master owning its slot.
        case sharded
    }

    let flavor: Flavor
    weak var owner: RedisPubSubConnectionOwner?

    private let configuration: RedisClientConfiguration
    private let eventLoop: EventLoop
    private let logger: Logger
    private let metrics: RedisClientMetrics
    private let commandLink: RedisLink
    private let subscriptionLink: RedisLink
    private var gate: RedisPublishGate
    /// The outbox length last reported to ``metrics``.
    private var reportedQueued = 0
    private var closed = false

    /// Channels and patterns subscribed here, restored on every reconnect.
    private(set) var channels: Set<String> = []
    private(set) var patterns: Set<String> = []

    /// The command link's channel while it is up.
    private var commandChannel: Channel?
    /// The subscription link's channel from the moment subscriptions are restored on it, so a
    /// subscribe made while the restore is in flight still reaches Redis.
    private var subscriptionChannel: Channel?
    private var subscriptionsReady = false
    private var flushScheduled = false
    private var settleBound: Scheduled<Void>?
    private var sampler: Scheduled<Void>?

    init(flavor: Flavor, configuration: RedisClientConfiguration, eventLoop: EventLoop, metrics: RedisClientMetrics, logger: Logger) {
        self.flavor = flavor
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.logger = logger
        self.gate = RedisPublishGate(outboxLimit: configuration.outboxLimit)
        self.commandLink = RedisLink(role: .commands, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.subscriptionLink = RedisLink(role: .subscriptions, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.commandLink.delegate = self
        self.subscriptionLink.delegate = self
    }

    /// Both links are up and every subscription is active on Redis.
    var isConnected: Bool {
        self.commandChannel != nil && self.subscriptionsReady
    }

    /// The node the command link is connected to, nil while it is down.
    var connectedURL: RedisURL? { self.commandLink.connectedURL }

    /// The node the command link uses or tries, once known.
    var commandTarget: RedisTarget? { self.commandLink.target }

    var outboxCount: Int { self.gate.outbox.count }

    func start() {
        self.commandLink.start()
        self.subscriptionLink.start()
    }

    /// Leaves the node both links use (those not at `node` already) and connects again at once.
    func reconnect(unlessAt node: RedisEndpoint, because reason: String) {
        for link in [self.commandLink, self.subscriptionLink] where link.connectedURL?.endpoint != node {
            link.reconnect(because: reason)
        }
    }

    /// Sends what the outbox holds if Redis is reachable, waits for Redis to have handled it
    /// (a PING answered after it), closes both links and returns what could not go out.
    func close() -> EventLoopFuture<Deque<RedisOutbox.Entry>> {
        self.closed = true
        self.settleBound?.cancel()
        self.sampler?.cancel()
        return self.drain().assumeIsolated()
            .flatMap { () -> EventLoopFuture<Void> in
                EventLoopFuture.andAllComplete([self.commandLink.close(), self.subscriptionLink.close()], on: self.eventLoop)
            }
            .map { () -> Deque<RedisOutbox.Entry> in
                let left = self.gate.takeAll()
                self.reportQueued()
                return left
            }
            .nonisolated()
    }

    /// Writes the outbox and waits, at most the connect timeout, for a PING to come back:
    /// Redis answers in order, so by then it has handled every publish written before.
    private func drain() -> EventLoopFuture<Void> {
        guard let connection = self.commandChannel, connection.isActive else {
            return self.eventLoop.makeSucceededVoidFuture()
        }
        self.writeAll(self.gate.takeAll(), to: connection)
        let done = self.eventLoop.makePromise(of: Void.self)
        let timeout = self.eventLoop.scheduleTask(in: self.configuration.connectTimeout) { done.succeed() }
        self.send(RedisCommand(["PING"])).whenComplete { _ in
            timeout.cancel()
            done.succeed()
        }
        return done.futureResult
    }

    // MARK: - Publishing and commands

    /// Publishes now, or queues behind what waits already; returns false when the outbox had to
    /// drop a publish.
    @discardableResult
    func publish(_ channel: String, _ message: ByteBuffer) -> Bool {
        // A link that closed but was not reported down yet takes nothing: the publish would be lost.
        if let connection = self.commandChannel, !connection.isActive {
            self.gate.linksDown()
        }
        switch self.gate.publish(channel: channel, message: message) {
        case .send:
            guard let connection = self.commandChannel else { preconditionFailure("the gate is up without a command link") }
            self.write(channel, message, to: connection)
            return true
        case .queued:
            self.reportQueued()
            return true
        case .queuedDroppingOldest:
            self.reportQueued()
            self.metrics.didDrop(1)
            return false
        }
    }

    /// Takes publishes another connection held for a channel this node serves now; they wait
    /// for the subscribers as a backlog does.
    func adopt(_ entries: [RedisOutbox.Entry]) {
        let (dropped, settle) = self.gate.adopt(entries, now: .now())
        self.reportQueued()
        self.metrics.didDrop(dropped)
        if let settle { self.settle(settle) }
    }

    /// Sends one command on the command link; fails at once while that link is down, since a
    /// query (unlike a publish) is worth nothing once stale.
    func send(_ command: RedisCommand) -> EventLoopFuture<RedisReply> {
        guard let connection = self.commandChannel, connection.isActive else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        let reply = self.eventLoop.makePromise(of: RedisReply.self)
        // A write that never reaches the command handler (the channel just closed) fails here.
        connection.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        return reply.futureResult
    }

    /// `PUBSUB NUMSUB` on this node for `channels`; in sharded mode `PUBSUB SHARDNUMSUB`, one
    /// per channel since a Cluster refuses channels of different slots in one command.
    func countSubscribers(of channels: [String]) -> EventLoopFuture<[String: Int]> {
        switch self.flavor {
        case .classic:
            return self.send(RedisCommand(["PUBSUB", "NUMSUB"] + channels)).flatMapThrowing { reply in
                try Self.subscriberCounts(reply, subcommand: "NUMSUB")
            }
        case .sharded:
            let counts = channels.map { channel in
                self.send(RedisCommand(["PUBSUB", "SHARDNUMSUB", channel])).flatMapThrowing { reply in
                    try Self.subscriberCounts(reply, subcommand: "SHARDNUMSUB")
                }
            }
            return EventLoopFuture.reduce(into: [:], counts, on: self.eventLoop) { total, counts in
                total.merge(counts, uniquingKeysWith: +)
            }
        }
    }

    /// The channel → count pairs of a `PUBSUB NUMSUB` or `SHARDNUMSUB` answer.
    static func subscriberCounts(_ reply: RedisReply, subcommand: String) throws -> [String: Int] {
        if case .error(let message) = reply { throw RedisClientError.commandFailed(message) }
        guard let fields = reply.array, fields.count % 2 == 0 else {
            throw RedisClientError.protocolError("unexpected PUBSUB \(subcommand) answer: \(reply)")
        }
        var counts: [String: Int] = [:]
        for index in stride(from: 0, to: fields.count, by: 2) {
            guard let channel = fields[index].string, let count = fields[index + 1].integer else {
                throw RedisClientError.protocolError("unexpected PUBSUB \(subcommand) answer: \(reply)")
            }
            counts[channel] = Int(count)
        }
        return counts
    }

    /// Writes now and flushes once per event loop tick, so a burst of publishes shares a syscall.
    private func write(_ channel: String, _ message: ByteBuffer, to connection: Channel) {
        connection.write(RedisCommandRequest(command: self.publishCommand(channel, message), reply: nil), promise: nil)
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            connection.flush()
        }
    }

    private func writeAll(_ entries: Deque<RedisOutbox.Entry>, to connection: Channel) {
        guard !entries.isEmpty else { return }
        for entry in entries {
            connection.write(RedisCommandRequest(command: self.publishCommand(entry.channel, entry.message), reply: nil), promise: nil)
        }
        connection.flush()
    }

    private func publishCommand(_ channel: String, _ message: ByteBuffer) -> RedisCommand {
        switch self.flavor {
        case .classic: return .publish(channel, message)
        case .sharded: return .spublish(channel, message)
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
        self.metrics.didDrop(self.gate.requeueUnanswered(entries))
        self.reportQueued()
    }

    private func reportQueued() {
        let queued = self.gate.outbox.count
        self.metrics.queuedChanged(by: queued - self.reportedQueued)
        self.reportedQueued = queued
    }

    // MARK: - Settling after an outage

    private func connectivityChanged(lostLink: Bool) {
        if self.isConnected, !self.closed {
            if let settle = self.gate.linksUp(now: .now()) { self.settle(settle) }
            self.scheduleSample()
        } else {
            self.gate.linksDown()
            self.settleBound?.cancel()
            self.sampler?.cancel()
        }
        self.owner?.connectionConnectivityChanged(self, lostLink: lostLink && !self.closed)
    }

    /// Waits for the subscribers counted before the outage, polling Redis, and at most the
    /// settle bound (``RedisClientConfiguration/outboxSettleDelay``).
    private func settle(_ settle: RedisPublishGate.Settle) {
        self.logger.info(
            "Redis is back; sending queued publishes once the other nodes subscribed again",
            metadata: [
                "redis.queued": "\(self.gate.outbox.count)", "redis.settle-bound": "\(self.configuration.outboxSettleDelay)",
                "redis.awaited-subscribers": "\(self.gate.expected.values.reduce(0, +))",
            ]
        )
        self.settleBound?.cancel()
        self.settleBound = self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.outboxSettleDelay) {
            if let flush = self.gate.boundReached(settle: settle.settle, now: .now()) { self.send(flush) }
        }
        self.poll(settle)
    }

    private func poll(_ settle: RedisPublishGate.Settle) {
        guard !settle.channels.isEmpty, let owner = self.owner else { return }
        owner.connection(self, countSubscribersOf: settle.channels).assumeIsolated().whenComplete { result in
            if case .success(let counts) = result, let flush = self.gate.counted(counts, settle: settle.settle, now: .now()) {
                self.send(flush)
                return
            }
            guard case .settling(_, settle.settle) = self.gate.phase, !self.closed else { return }
            self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.outboxSettlePollInterval) { self.poll(settle) }
        }
    }

    private func send(_ flush: RedisPublishGate.Flush) {
        self.settleBound?.cancel()
        self.reportQueued()
        self.metrics.didFlush(flush, logger: self.logger)
        guard let connection = self.commandChannel else { return }
        self.writeAll(flush.entries, to: connection)
    }

    /// How many channels a sample counts at most, so a node subscribed to thousands of room
    /// channels (sharded pub/sub) does not pay a count per room every interval.
    static let sampledChannelLimit = 64

    /// While up, counts the subscribers of the channels subscribed here every sample interval:
    /// the other nodes of the cluster subscribe the same ones, so these are the counts to wait
    /// for after the next outage. The shortest names go first: a namespace's own channels, which
    /// every node subscribes, before its rooms'.
    private func scheduleSample() {
        self.sampler?.cancel()
        self.sampler = self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.subscriberSampleInterval) {
            guard !self.closed, self.isConnected else { return }
            self.scheduleSample()
            guard self.gate.phase == .up, !self.channels.isEmpty, let owner = self.owner else { return }
            let watched = self.channels.sorted { ($0.utf8.count, $0) < ($1.utf8.count, $1) }.prefix(Self.sampledChannelLimit)
            owner.connection(self, countSubscribersOf: Array(watched)).assumeIsolated().whenSuccess { counts in
                _ = self.gate.counted(counts, settle: nil, now: .now())
            }
        }
    }

    // MARK: - Subscriptions

    /// Subscribes a channel here, restored on every reconnect; false if it already was.
    @discardableResult
    func subscribe(_ channel: String) -> Bool {
        guard self.channels.insert(channel).inserted else { return false }
        self.subscriptionChannel?.writeAndFlush(RedisCommand([self.subscribeCommand, channel]), promise: nil)
        return true
    }

    func unsubscribe(_ channel: String) {
        guard self.channels.remove(channel) != nil else { return }
        self.gate.forget(channel)
        let command = self.flavor == .sharded ? "SUNSUBSCRIBE" : "UNSUBSCRIBE"
        self.subscriptionChannel?.writeAndFlush(RedisCommand([command, channel]), promise: nil)
    }

    func psubscribe(_ pattern: String) {
        guard self.patterns.insert(pattern).inserted else { return }
        self.subscriptionChannel?.writeAndFlush(RedisCommand(["PSUBSCRIBE", pattern]), promise: nil)
    }

    func punsubscribe(_ pattern: String) {
        guard self.patterns.remove(pattern) != nil else { return }
        self.subscriptionChannel?.writeAndFlush(RedisCommand(["PUNSUBSCRIBE", pattern]), promise: nil)
    }

    private var subscribeCommand: String {
        self.flavor == .sharded ? "SSUBSCRIBE" : "SUBSCRIBE"
    }

    /// Swaps the command handler used for AUTH/SELECT for the pub/sub handler, restores every
    /// subscription, and completes once Redis answered the PING written after them.
    ///
    /// Patterns go first: a peer waiting for this node's channels to be counted again (see
    /// ``RedisPublishGate``) then knows the patterns are in too. Shard channels go one per
    /// SSUBSCRIBE, since channels of different slots cannot share one.
    private func prepareSubscriptions(on channel: Channel) -> EventLoopFuture<Void> {
        let ready = channel.eventLoop.makePromise(of: Void.self)
        do {
            let pipeline = channel.pipeline.syncOperations
            pipeline.removeHandler(try pipeline.handler(type: RedisCommandHandler.self), promise: nil)
            try pipeline.addHandler(RedisPubSubHandler(ready: ready) { [weak self] message in
                guard let self else { return }
                self.owner?.connection(self, received: message)
            })
        } catch {
            ready.fail(error)
            return ready.futureResult
        }
        self.subscriptionChannel = channel
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            if self.subscriptionChannel === channel { self.subscriptionChannel = nil }
        }
        if !self.patterns.isEmpty {
            channel.write(RedisCommand(["PSUBSCRIBE"] + self.patterns.sorted()), promise: nil)
        }
        switch self.flavor {
        case .classic:
            if !self.channels.isEmpty {
                channel.write(RedisCommand(["SUBSCRIBE"] + self.channels.sorted()), promise: nil)
            }
        case .sharded:
            for name in self.channels.sorted() {
                channel.write(RedisCommand(["SSUBSCRIBE", name]), promise: nil)
            }
        }
        channel.writeAndFlush(RedisCommand(["PING"]), promise: nil)
        return ready.futureResult
    }
}

extension RedisPubSubConnection: RedisLinkDelegate {
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        guard let owner = self.owner else { return self.eventLoop.makeFailedFuture(RedisClientError.shutDown) }
        return owner.connectionTarget(self, link: link, failed: failed)
    }

    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void> {
        switch link.role {
        case .subscriptions:
            return self.prepareSubscriptions(on: channel)
        case .commands, .sentinel, .streamReader:
            return channel.eventLoop.makeSucceededVoidFuture()
        }
    }

    func linkDidConnect(_ link: RedisLink, channel: Channel) {
        switch link.role {
        case .commands:
            self.commandChannel = channel
            if let handler = try? channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self) {
                handler.onUnansweredPublishes = { [weak self] commands in self?.requeue(commands) }
                handler.onRefusedPublish = { [weak self] command, error in
                    guard let self, command.arguments.count == 3 else { return }
                    self.owner?.connection(self, refused: String(buffer: command.arguments[1]), message: command.arguments[2], error: error)
                }
            }
        case .subscriptions:
            self.subscriptionChannel = channel
            self.subscriptionsReady = true
        case .sentinel, .streamReader:
            return
        }
        self.connectivityChanged(lostLink: false)
    }

    func linkDidDisconnect(_ link: RedisLink) {
        switch link.role {
        case .commands:
            self.commandChannel = nil
        case .subscriptions:
            self.subscriptionChannel = nil
            self.subscriptionsReady = false
        case .sentinel, .streamReader:
            return
        }
        self.connectivityChanged(lostLink: true)
    }
}
