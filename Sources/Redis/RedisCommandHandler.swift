import DequeModule
import Logging
import NIOCore

/// A command to write on the command link and where its reply goes.
struct RedisCommandRequest: Sendable {
    var command: RedisCommand
    /// Nil for fire-and-forget commands (publishes): their reply is read and discarded.
    var reply: EventLoopPromise<RedisReply>?
}

/// Matches replies to commands: Redis answers in order, so a FIFO of promises is all it takes.
///
/// Every promise still waiting is failed when the connection closes, errors or this handler
/// leaves the pipeline, so no caller waits forever and no promise leaks.
final class RedisCommandHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = RedisReply
    typealias OutboundIn = RedisCommandRequest
    typealias OutboundOut = RedisCommand

    private var waiting: Deque<EventLoopPromise<RedisReply>?> = []
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = self.unwrapInboundIn(data)
        guard let waiter = self.waiting.popFirst() else {
            self.fail(RedisClientError.protocolError("a reply came that no command asked for"), context: context)
            return
        }
        if let waiter {
            waiter.succeed(reply)
        } else if case .error(let message) = reply {
            self.logger.warning("Redis refused a publish", metadata: ["redis.error": "\(message)"])
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        self.waiting.append(request.reply)
        context.write(self.wrapOutboundOut(request.command), promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(RedisClientError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(error, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.failAll(RedisClientError.connectionClosed)
    }

    /// Once replies and commands may be out of step, the connection can only be dropped.
    private func fail(_ error: Error, context: ChannelHandlerContext) {
        self.failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        let waiting = self.waiting
        self.waiting.removeAll()
        for waiter in waiting {
            waiter?.fail(error)
        }
    }
}
