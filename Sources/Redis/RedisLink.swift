import Logging
import NIOCore
import NIOPosix

/// What a ``RedisLink`` asks of its owner.
protocol RedisLinkDelegate: AnyObject {
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

    init(role: Role, configuration: RedisClientConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.role = role
        self.configuration = configuration
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.link"] = "\(role.rawValue)"
        logger[metadataKey: "redis.url"] = "\(configuration.url)"
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
        let url = self.configuration.url
        let connected: EventLoopFuture<Channel>
        if let path = url.unixPath {
            connected = bootstrap.connect(unixDomainSocketPath: path)
        } else {
            connected = bootstrap.connect(host: url.host ?? "localhost", port: url.port)
        }
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
        let url = self.configuration.url
        var commands: [RedisCommand] = []
        if let password = url.password {
            commands.append(RedisCommand(["AUTH"] + (url.user.map { [$0] } ?? []) + [password]))
        }
        if let database = url.database, database != 0 {
            commands.append(RedisCommand(["SELECT", String(database)]))
        }
        let replies = commands.map { command in
            let promise = channel.eventLoop.makePromise(of: RedisReply.self)
            channel.write(RedisCommandRequest(command: command, reply: promise)).whenFailure { promise.fail($0) }
            return promise.futureResult.flatMapThrowing { reply in
                if case .error(let message) = reply { throw RedisClientError.commandFailed(message) }
            }
        }
        channel.flush()
        return EventLoopFuture.andAllSucceed(replies, on: channel.eventLoop)
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
        if self.inOutage {
            self.logger.info("reconnected to Redis", metadata: ["redis.failed-attempts": "\(self.failedAttempts)"])
        } else {
            self.logger.info("connected to Redis")
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
            self.logger.warning("lost the connection to Redis; reconnecting")
            self.inOutage = true
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
            self.failedAttempts += 1
            if self.inOutage {
                self.logger.debug("Redis connection attempt failed", metadata: ["error": "\(error)"])
            } else {
                self.inOutage = true
                self.logger.warning(
                    "cannot connect to Redis; retrying in the background",
                    metadata: ["error": "\(error)", "redis.max-backoff": "\(self.configuration.maxBackoff)"]
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
