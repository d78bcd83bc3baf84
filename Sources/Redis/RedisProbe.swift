import Logging
import NIOCore
import NIOPosix

/// A short-lived connection that logs in, sends a few commands and closes: how the client asks
/// Sentinels for the master and Cluster nodes for their layout and subscriber counts, without
/// disturbing its long-lived links.
enum RedisProbe {
    /// The replies to `commands`, in order, or a failure if the node cannot be reached, refuses
    /// the login, or does not answer everything within `timeout`.
    static func send(
        _ commands: [RedisCommand],
        to url: RedisURL,
        on eventLoop: EventLoop,
        timeout: TimeAmount,
        logger: Logger
    ) -> EventLoopFuture<[RedisReply]> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        MessageToByteHandler(RedisCommandEncoder()),
                        RESPReaderHandler(),
                        RedisCommandHandler(logger: logger)
                    )
                }
            }
        let connected: EventLoopFuture<Channel>
        if let path = url.unixPath {
            connected = bootstrap.connect(unixDomainSocketPath: path)
        } else {
            connected = bootstrap.connect(host: url.host ?? "localhost", port: url.port)
        }
        let handshake = url.handshakeCommands
        return connected.flatMap { channel in
            // Closing fails every reply still awaited, so the future below always completes.
            let deadline = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
            let replies = (handshake + commands).map { command in
                let promise = channel.eventLoop.makePromise(of: RedisReply.self)
                channel.write(RedisCommandRequest(command: command, reply: promise)).whenFailure { promise.fail($0) }
                return promise.futureResult
            }
            channel.flush()
            return EventLoopFuture.whenAllSucceed(replies, on: channel.eventLoop)
                .flatMapThrowing { replies -> [RedisReply] in
                    for reply in replies.prefix(handshake.count) {
                        if case .error(let message) = reply { throw RedisClientError.commandFailed(message) }
                    }
                    return Array(replies.dropFirst(handshake.count))
                }
                .always { _ in
                    deadline.cancel()
                    channel.close(promise: nil)
                }
        }
    }
}
