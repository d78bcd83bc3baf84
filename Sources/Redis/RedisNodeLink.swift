import Logging
import NIOCore

/// A kept command connection to one fixed node, reconnecting on its own: how the classic client
/// in Cluster mode asks every node for its subscribers (each node counts only its own) without
/// opening and logging in a new connection per question.
///
/// Confined to the client's event loop.
final class RedisNodeLink {
    let url: RedisURL
    private let eventLoop: EventLoop
    private let link: RedisLink
    private var channel: Channel?

    init(url: RedisURL, configuration: RedisClientConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.url = url
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.node"] = "\(url)"
        self.link = RedisLink(role: .commands, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.link.delegate = self
    }

    /// Whether a command can go out now.
    var isConnected: Bool { self.channel?.isActive == true }

    func start() {
        self.link.start()
    }

    func close() -> EventLoopFuture<Void> {
        self.link.close()
    }

    /// Redis's reply; fails at once while the link is down.
    func send(_ command: RedisCommand) -> EventLoopFuture<RedisReply> {
        guard let channel = self.channel, channel.isActive else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        let reply = self.eventLoop.makePromise(of: RedisReply.self)
        channel.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        return reply.futureResult
    }
}

extension RedisNodeLink: RedisLinkDelegate {
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        self.eventLoop.makeSucceededFuture(RedisTarget(url: self.url))
    }

    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.makeSucceededVoidFuture()
    }

    func linkDidConnect(_ link: RedisLink, channel: Channel) {
        self.channel = channel
    }

    func linkDidDisconnect(_ link: RedisLink) {
        self.channel = nil
    }
}
