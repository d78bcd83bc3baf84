import DequeModule
import Logging
import Metrics
import NIOCore

/// A command to write on the command link and where its reply goes.
struct RedisCommandRequest: Sendable {
    var command: RedisCommand
    /// Nil for fire-and-forget commands (publishes): their reply is read and discarded.
    var reply: EventLoopPromise<RedisReply>?
}

/// Matches replies to commands: Redis answers in order, so a FIFO of waiters is all it takes.
/// A publish waits with the time it was written, so its reply measures the publish latency.
///
/// Every promise still waiting is failed when the connection closes, errors or this handler
/// leaves the pipeline, so no caller waits forever and no promise leaks.
final class RedisCommandHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = RedisReply
    typealias OutboundIn = RedisCommandRequest
    typealias OutboundOut = RedisCommand

    private enum Waiter {
        case caller(EventLoopPromise<RedisReply>)
        case publish(RedisCommand, writtenAt: NIODeadline)
    }

    private var waiting: Deque<Waiter> = []
    /// Receives, once, the publishes written but never answered when the connection ends:
    /// Redis may not have seen them, so the client queues them again rather than lose them.
    var onUnansweredPublishes: (([RedisCommand]) -> Void)?
    /// Receives a publish Redis answered with an error (a `MOVED` in sharded mode); without
    /// it, the refusal is logged.
    var onRefusedPublish: ((RedisCommand, String) -> Void)?
    /// Receives the reply of every publish Redis accepted, in order (a stream client learns
    /// from it the id of the last entry Redis confirmed appending).
    var onAcceptedPublish: ((RedisReply) -> Void)?
    private let logger: Logger
    /// From writing a publish on this link to Redis's reply; time spent in the outbox while
    /// Redis was away is not included.
    private let publishLatency = Timer(label: "sidecast_redis_publish_duration_seconds")

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = self.unwrapInboundIn(data)
        guard let waiter = self.waiting.popFirst() else {
            self.fail(RedisClientError.protocolError("a reply came that no command asked for"), context: context)
            return
        }
        switch waiter {
        case .caller(let promise):
            promise.succeed(reply)
        case .publish(let command, let writtenAt):
            self.publishLatency.recordNanoseconds((NIODeadline.now() - writtenAt).nanoseconds)
            if case .error(let message) = reply {
                if let onRefused = self.onRefusedPublish {
                    onRefused(command, message)
                } else {
                    self.logger.warning("Redis refused a publish", metadata: ["redis.error": "\(message)"])
                }
            } else {
                self.onAcceptedPublish?(reply)
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        self.waiting.append(request.reply.map { .caller($0) } ?? .publish(request.command, writtenAt: .now()))
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
        var unanswered: [RedisCommand] = []
        for waiter in waiting {
            switch waiter {
            case .caller(let promise): promise.fail(error)
            case .publish(let command, _): unanswered.append(command)
            }
        }
        if let onUnanswered = self.onUnansweredPublishes {
            self.onUnansweredPublishes = nil
            if !unanswered.isEmpty { onUnanswered(unanswered) }
        }
    }
}
