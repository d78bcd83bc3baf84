import Logging
import NIOCore

/// What a ``RedisShard`` reports to the sharded client that owns it.
protocol RedisShardOwner: AnyObject {
    /// A link to the shard failed: the slot map may be stale (a failover).
    func shardDidFail(_ shard: RedisShard)
    func shardConnectivityChanged(_ shard: RedisShard)
    /// The shard sent what its outbox held.
    func shardDidFlushOutbox(_ shard: RedisShard)
    /// The shard answered an SPUBLISH with an error, such as a `MOVED` redirection.
    func shard(_ shard: RedisShard, refused channel: String, message: ByteBuffer, error: String)
    /// A publish written to the shard whose answer never came; it may not have reached Redis.
    func shard(_ shard: RedisShard, lost channel: String, message: ByteBuffer)
    func shard(_ shard: RedisShard, received message: ByteBuffer, on channel: String)
}

/// The two connections sharded pub/sub needs to one master of a cluster (or to a standalone
/// Redis 7): one for SPUBLISH, one for the SSUBSCRIBEs of the channels whose slots it owns,
/// each reconnecting on its own. Publishes made while it is down wait in its outbox.
///
/// Confined to the client's event loop.
final class RedisShard {
    let url: RedisURL
    private let configuration: RedisClientConfiguration
    private let eventLoop: EventLoop
    private let logger: Logger
    private let commandLink: RedisLink
    private let subscriptionLink: RedisLink
    weak var owner: RedisShardOwner?

    /// The shard channels subscribed here, restored on every reconnect.
    private(set) var channels: Set<String> = []
    private(set) var outbox: RedisOutbox
    private var commandChannel: Channel?
    private var subscriptionChannel: Channel?
    private var subscriptionsReady = false
    private var flushScheduled = false
    private var closed = false

    init(url: RedisURL, configuration: RedisClientConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.url = url
        self.configuration = configuration
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.shard"] = "\(url)"
        self.logger = logger
        self.outbox = RedisOutbox(limit: configuration.outboxLimit)
        self.commandLink = RedisLink(role: .commands, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.subscriptionLink = RedisLink(role: .subscriptions, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.commandLink.delegate = self
        self.subscriptionLink.delegate = self
    }

    var isConnected: Bool {
        self.commandChannel != nil && self.subscriptionsReady
    }

    func start() {
        self.commandLink.start()
        self.subscriptionLink.start()
    }

    /// Sends what can be sent, waits for Redis to have handled it, then closes both links;
    /// returns the publishes that could not go out.
    func close() -> EventLoopFuture<[RedisOutbox.Entry]> {
        self.closed = true
        var drained = self.eventLoop.makeSucceededVoidFuture()
        if let connection = self.commandChannel, self.isConnected {
            self.flushOutbox(to: connection)
            let ping = self.eventLoop.makePromise(of: RedisReply.self)
            connection.writeAndFlush(RedisCommandRequest(command: RedisCommand(["PING"]), reply: ping)).whenFailure { ping.fail($0) }
            drained = ping.futureResult.map { _ in }.recover { _ in }
        }
        return drained.assumeIsolated().flatMap { () -> EventLoopFuture<Void> in
            EventLoopFuture.andAllComplete([self.commandLink.close(), self.subscriptionLink.close()], on: self.eventLoop)
        }.map { Array(self.outbox.removeAll()) }.nonisolated()
    }

    func subscribe(_ channel: String) {
        guard self.channels.insert(channel).inserted else { return }
        self.subscriptionChannel?.writeAndFlush(RedisCommand(["SSUBSCRIBE", channel]), promise: nil)
    }

    func unsubscribe(_ channel: String) {
        guard self.channels.remove(channel) != nil else { return }
        self.subscriptionChannel?.writeAndFlush(RedisCommand(["SUNSUBSCRIBE", channel]), promise: nil)
    }

    /// Publishes now when both links are up and nothing waits before it, else queues; returns
    /// false when the outbox had to drop a publish.
    func publish(_ channel: String, _ message: ByteBuffer) -> Bool {
        if self.isConnected, self.outbox.count == 0, let connection = self.commandChannel, connection.isActive {
            self.write(channel, message, to: connection)
            return true
        }
        return self.outbox.append(channel: channel, message: message)
    }

    /// Sends one command on the publish link; fails at once while that link is down, since a
    /// query (unlike a publish) is worth nothing once stale.
    func send(_ command: RedisCommand) -> EventLoopFuture<RedisReply> {
        guard let connection = self.commandChannel, connection.isActive else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        let reply = self.eventLoop.makePromise(of: RedisReply.self)
        connection.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        return reply.futureResult
    }

    /// Takes publishes another shard held for a slot this one owns now.
    func adopt(_ entries: [RedisOutbox.Entry]) -> Int {
        let before = self.outbox.dropped
        self.outbox.requeue(entries)
        if self.isConnected { self.scheduleOutboxFlush() }
        return self.outbox.dropped - before
    }

    /// Writes now and flushes once per event loop tick, so a burst of publishes shares a
    /// syscall. The reply is awaited to catch `MOVED` and lost connections.
    private func write(_ channel: String, _ message: ByteBuffer, to connection: Channel) {
        let reply = self.eventLoop.makePromise(of: RedisReply.self)
        connection.write(RedisCommandRequest(command: .spublish(channel, message), reply: reply), promise: nil)
        reply.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success(.error(let error)):
                self.owner?.shard(self, refused: channel, message: message, error: error)
            case .success:
                break
            case .failure:
                self.owner?.shard(self, lost: channel, message: message)
            }
        }
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            connection.flush()
        }
    }

    /// Sends the outbox once other nodes had time to resubscribe, as the classic client does.
    private func scheduleOutboxFlush() {
        guard self.outbox.count > 0 else { return }
        self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.outboxSettleDelay) {
            guard !self.closed, self.isConnected, let connection = self.commandChannel else { return }
            self.flushOutbox(to: connection)
        }
    }

    private func flushOutbox(to connection: Channel) {
        let queued = self.outbox.removeAll()
        guard !queued.isEmpty else { return }
        self.logger.info("sending shard publishes queued while Redis was unreachable", metadata: ["redis.queued": "\(queued.count)"])
        for entry in queued {
            self.write(entry.channel, entry.message, to: connection)
        }
        self.owner?.shardDidFlushOutbox(self)
    }

    /// Swaps the command handler for the pub/sub handler and restores every subscription, one
    /// SSUBSCRIBE per channel since channels of different slots cannot share one.
    private func prepareSubscriptions(on channel: Channel) -> EventLoopFuture<Void> {
        let ready = channel.eventLoop.makePromise(of: Void.self)
        do {
            let pipeline = channel.pipeline.syncOperations
            pipeline.removeHandler(try pipeline.handler(type: RedisCommandHandler.self), promise: nil)
            try pipeline.addHandler(RedisPubSubHandler(ready: ready) { [weak self] message in
                guard let self, case .message(let name, let payload) = message else { return }
                self.owner?.shard(self, received: payload, on: name)
            })
        } catch {
            ready.fail(error)
            return ready.futureResult
        }
        self.subscriptionChannel = channel
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            if self.subscriptionChannel === channel { self.subscriptionChannel = nil }
        }
        for name in self.channels.sorted() {
            channel.write(RedisCommand(["SSUBSCRIBE", name]), promise: nil)
        }
        channel.writeAndFlush(RedisCommand(["PING"]), promise: nil)
        return ready.futureResult
    }
}

extension RedisShard: RedisLinkDelegate {
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        if failed != nil { self.owner?.shardDidFail(self) }
        return self.eventLoop.makeSucceededFuture(RedisTarget(url: self.url))
    }

    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void> {
        switch link.role {
        case .subscriptions:
            return self.prepareSubscriptions(on: channel)
        case .commands, .sentinel:
            return channel.eventLoop.makeSucceededVoidFuture()
        }
    }

    func linkDidConnect(_ link: RedisLink, channel: Channel) {
        switch link.role {
        case .commands:
            self.commandChannel = channel
        case .subscriptions:
            self.subscriptionChannel = channel
            self.subscriptionsReady = true
        case .sentinel:
            return
        }
        if self.isConnected { self.scheduleOutboxFlush() }
        self.owner?.shardConnectivityChanged(self)
    }

    func linkDidDisconnect(_ link: RedisLink) {
        switch link.role {
        case .commands:
            self.commandChannel = nil
        case .subscriptions:
            self.subscriptionChannel = nil
            self.subscriptionsReady = false
        case .sentinel:
            return
        }
        if !self.closed { self.owner?.shardDidFail(self) }
        self.owner?.shardConnectivityChanged(self)
    }
}
