import Logging
import NIOCore
import NIOPosix

/// The node a ``RedisLink`` connects to, and what it must check there.
struct RedisTarget: Sendable, Hashable {
    /// The address with the credentials and database to log in with.
    var url: RedisURL
    /// Sentinel mode: a node whose `ROLE` is not master (a demoted master back from a crash)
    /// must not be used, so the attempt fails and the link asks again.
    var requireMaster = false
}

/// What a ``RedisLink`` asks of its owner.
protocol RedisLinkDelegate: AnyObject {
    /// Where the next connection attempt goes; `failed` is the target of the attempt or
    /// connection that just failed, nil for the first attempt and after a requested reconnect.
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget>
    /// Role-specific setup once AUTH and SELECT succeeded; the link counts as up when it succeeds.
    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void>
    func linkDidConnect(_ link: RedisLink, channel: Channel)
    func linkDidDisconnect(_ link: RedisLink)
}

/// One connection to Redis that keeps itself up: it connects, logs in, and after every failure
/// or loss retries with capped, jittered exponential backoff until closed.
///
/// Confined to one event loop; it logs one warning per outage and one info line when back.
final class RedisLink {
    enum Role: String {
        case commands
        case subscriptions
        /// Sentinel mode: subscribed to a sentinel's `+switch-master` events.
        case sentinel
        /// Blocked in `XREAD` on a stream (``RedisStreamClient``).
        case streamReader = "stream-reader"
    }

    enum State {
        case idle
        /// The channel is known once TCP is up, while AUTH, SELECT and the delegate's setup run.
        case connecting(Channel?)
        case connected(Channel)
        case disconnected(backoff: TimeAmount, retry: Scheduled<Void>)
        case shuttingDown(EventLoopPromise<Void>)
        case shutDown
    }

    let role: Role
    weak var delegate: RedisLinkDelegate?
    private(set) var state: State = .idle

    private let configuration: RedisClientConfiguration
    private let eventLoop: EventLoop
    private let logger: Logger
    private var backoff: TimeAmount
    /// True from the first failure (or loss) until the next successful connection.
    private var inOutage = false
    private var failedAttempts = 0
    /// What the current attempt or connection uses, once known.
    private(set) var target: RedisTarget?
    /// The target to report as failed to the delegate on the next attempt.
    private var failedTarget: RedisTarget?
    /// Set by ``reconnect(because:)`` so the closing is logged as a move, not as a loss.
    private var moveReason: String?

    init(role: Role, configuration: RedisClientConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.role = role
        self.configuration = configuration
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.link"] = "\(role.rawValue)"
        self.logger = logger
        self.backoff = configuration.minBackoff
    }

    func start() {
        guard case .idle = self.state else { return }
        self.connect()
    }

    /// Closes the connection, or stops retrying; the future completes once the socket is closed.
    func close() -> EventLoopFuture<Void> {
        switch self.state {
        case .idle, .shutDown:
            self.state = .shutDown
            return self.eventLoop.makeSucceededVoidFuture()
        case .disconnected(_, let retry):
            retry.cancel()
            self.state = .shutDown
            return self.eventLoop.makeSucceededVoidFuture()
        case .connecting(let channel):
            // The attempt fails once the channel closes (or right after TCP connects) and completes the promise.
            let promise = self.eventLoop.makePromise(of: Void.self)
            self.state = .shuttingDown(promise)
            channel?.close(promise: nil)
            return promise.futureResult
        case .connected(let channel):
            let promise = self.eventLoop.makePromise(of: Void.self)
            self.state = .shuttingDown(promise)
            channel.close(promise: nil)
            return promise.futureResult
        case .shuttingDown(let promise):
            return promise.futureResult
        }
    }

    /// The address this link is connected to, nil while it is not.
    var connectedURL: RedisURL? {
        guard case .connected = self.state else { return nil }
        return self.target?.url
    }

    /// Leaves the current node (or skips the wait before the next attempt) and connects again
    /// at once, asking the delegate where: the node in use is no longer the right one.
    func reconnect(because reason: String) {
        switch self.state {
        case .connected(let channel):
            self.moveReason = reason
            channel.close(promise: nil)
        case .disconnected(_, let retry):
            retry.cancel()
            self.backoff = self.configuration.minBackoff
            self.connect()
        case .idle, .connecting, .shuttingDown, .shutDown:
            // An attempt in flight asked for its target moments ago; it is left to finish.
            break
        }
    }

    private func connect() {
        switch self.state {
        case .idle, .disconnected:
            self.state = .connecting(nil)
        case .connecting, .connected, .shuttingDown, .shutDown:
            return
        }
        let logger = self.logger
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        MessageToByteHandler(RedisCommandEncoder()),
                        RESPReaderHandler(),
                        RedisCommandHandler(logger: logger)
                    )
                }
            }
        guard let delegate = self.delegate else { return }
        let failed = self.failedTarget
        self.failedTarget = nil
        self.target = nil
        let connected = delegate.linkTarget(self, failed: failed).assumeIsolated().flatMap { target -> EventLoopFuture<Channel> in
            self.target = target
            if let path = target.url.unixPath {
                return bootstrap.connect(unixDomainSocketPath: path)
            }
            return bootstrap.connect(host: target.url.host ?? "localhost", port: target.url.port)
        }.nonisolated()
        connected.assumeIsolated()
            .flatMap { channel in
                guard case .connecting = self.state else {
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(RedisClientError.shutDown)
                }
                self.state = .connecting(channel)
                return self.setUp(channel)
            }
            .whenComplete { result in self.connectAttemptCompleted(result) }
    }

    /// Logs in and lets the delegate prepare the connection, all within the connect timeout.
    private func setUp(_ channel: Channel) -> EventLoopFuture<Channel> {
        let timeout = channel.eventLoop.scheduleTask(in: self.configuration.connectTimeout) {
            channel.pipeline.fireErrorCaught(RedisClientError.timedOut)
        }
        return self.handshake(channel)
            .assumeIsolated()
            .flatMap { () -> EventLoopFuture<Void> in
                guard let delegate = self.delegate else {
                    return channel.eventLoop.makeFailedFuture(RedisClientError.shutDown)
                }
                return delegate.linkPrepare(self, channel: channel)
            }
            .map { channel }
            .flatMapError { error in
                channel.close(promise: nil)
                return channel.eventLoop.makeFailedFuture(error)
            }
            .always { _ in timeout.cancel() }
            .nonisolated()
    }

    private func handshake(_ channel: Channel) -> EventLoopFuture<Void> {
        guard let target = self.target else {
            return channel.eventLoop.makeFailedFuture(RedisClientError.shutDown)
        }
        var replies = target.url.handshakeCommands.map { command in
            self.send(command, on: channel).flatMapThrowing { reply in
                if case .error(let message) = reply { throw RedisClientError.commandFailed(message) }
            }
        }
        if target.requireMaster {
            let address = target.url.description
            replies.append(self.send(RedisCommand(["ROLE"]), on: channel).flatMapThrowing { reply in
                let role = reply.array?.first?.string ?? "\(reply)"
                if role != "master" { throw RedisClientError.notMaster(address, role: role) }
            })
        }
        channel.flush()
        return EventLoopFuture.andAllSucceed(replies, on: channel.eventLoop)
    }

    private func send(_ command: RedisCommand, on channel: Channel) -> EventLoopFuture<RedisReply> {
        let promise = channel.eventLoop.makePromise(of: RedisReply.self)
        channel.write(RedisCommandRequest(command: command, reply: promise)).whenFailure { promise.fail($0) }
        return promise.futureResult
    }

    private func connectAttemptCompleted(_ result: Result<Channel, Error>) {
        switch self.state {
        case .connecting:
            switch result {
            case .success(let channel):
                self.didConnect(channel)
            case .failure(let error):
                self.scheduleRetry(after: error)
            }
        case .shuttingDown(let promise):
            self.state = .shutDown
            guard case .success(let channel) = result else {
                promise.succeed()
                return
            }
            channel.close(promise: nil)
            channel.closeFuture.whenComplete { _ in promise.succeed() }
        case .idle, .connected, .disconnected, .shutDown:
            assertionFailure("connect attempt completed in state \(self.state)")
            if case .success(let channel) = result { channel.close(promise: nil) }
        }
    }

    private func didConnect(_ channel: Channel) {
        self.state = .connected(channel)
        let node: Logger.Metadata = ["redis.url": "\(self.target.map { "\($0.url)" } ?? "?")"]
        if self.inOutage {
            self.logger.info("reconnected to Redis", metadata: node.merging(["redis.failed-attempts": "\(self.failedAttempts)"]) { $1 })
        } else {
            self.logger.info("connected to Redis", metadata: node)
        }
        self.inOutage = false
        self.failedAttempts = 0
        self.backoff = self.configuration.minBackoff
        channel.closeFuture.assumeIsolated().whenComplete { _ in self.channelClosed(channel) }
        self.delegate?.linkDidConnect(self, channel: channel)
    }

    private func channelClosed(_ channel: Channel) {
        switch self.state {
        case .connected(let current) where current === channel:
            let node: Logger.Metadata = ["redis.url": "\(self.target.map { "\($0.url)" } ?? "?")"]
            if let reason = self.moveReason {
                self.moveReason = nil
                self.logger.info("leaving this Redis node", metadata: node.merging(["redis.reason": "\(reason)"]) { $1 })
            } else {
                self.logger.warning("lost the connection to Redis; reconnecting", metadata: node)
                self.inOutage = true
                self.failedTarget = self.target
            }
            self.delegate?.linkDidDisconnect(self)
            self.scheduleRetry(after: nil)
        case .shuttingDown(let promise):
            self.state = .shutDown
            self.delegate?.linkDidDisconnect(self)
            promise.succeed()
        case .idle, .connecting, .connected, .disconnected, .shutDown:
            break
        }
    }

    private func scheduleRetry(after error: Error?) {
        if let error {
            self.failedTarget = self.target
            self.failedAttempts += 1
            if self.inOutage {
                self.logger.debug("Redis connection attempt failed", metadata: ["error": "\(error)", "redis.url": "\(self.target.map { "\($0.url)" } ?? "?")"])
            } else {
                self.inOutage = true
                self.logger.warning(
                    "cannot connect to Redis; retrying in the background",
                    metadata: [
                        "error": "\(error)", "redis.max-backoff": "\(self.configuration.maxBackoff)",
                        "redis.url": "\(self.target.map { "\($0.url)" } ?? "?")",
                    ]
                )
            }
        }
        let delay = self.backoff.jittered()
        self.backoff = min(.nanoseconds(self.backoff.nanoseconds * 2), self.configuration.maxBackoff)
        let retry = self.eventLoop.assumeIsolated().scheduleTask(in: delay) { self.connect() }
        self.state = .disconnected(backoff: delay, retry: retry)
    }
}

extension TimeAmount {
    /// Between half and all of the amount, so clients that lost Redis together don't retry together.
    fileprivate func jittered() -> TimeAmount {
        let half = self.nanoseconds / 2
        return .nanoseconds(half + Int64.random(in: 0...max(half, 0)))
    }
}
