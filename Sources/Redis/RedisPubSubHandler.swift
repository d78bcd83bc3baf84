import NIOCore

/// A message delivered on the subscription link.
enum RedisPubSubMessage {
    case message(channel: String, message: ByteBuffer)
    case patternMessage(pattern: String, channel: String, message: ByteBuffer)
}

/// Routes what Redis pushes on a subscribed connection: `message`, `smessage` (sharded pub/sub,
/// delivered as a plain message) and `pmessage` go to the
/// callback, (un)subscribe confirmations are dropped, and the first `PING` answer completes
/// `ready`, which tells the link that every (P)SUBSCRIBE written before it took effect.
///
/// `SUBSCRIBE` with n channels gets n confirmations, so there is nothing to pair with promises;
/// commands go out through the pipeline to the encoder untouched.
final class RedisPubSubHandler: ChannelInboundHandler {
    typealias InboundIn = RedisReply

    private let ready: EventLoopPromise<Void>
    private let onMessage: (RedisPubSubMessage) -> Void

    init(ready: EventLoopPromise<Void>, onMessage: @escaping (RedisPubSubMessage) -> Void) {
        self.ready = ready
        self.onMessage = onMessage
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = self.unwrapInboundIn(data)
        switch reply {
        case .status(let status) where status.uppercased() == "PONG":
            self.ready.succeed()
        case .array(let items):
            self.route(items, context: context)
        case .error(let message):
            self.fail(RedisClientError.commandFailed(message), context: context)
        default:
            self.fail(RedisClientError.protocolError("unexpected reply on the subscription link: \(reply)"), context: context)
        }
    }

    private func route(_ items: [RedisReply], context: ChannelHandlerContext) {
        switch (items.first?.string?.lowercased(), items.count) {
        case ("message", 3), ("smessage", 3):
            guard let channel = items[1].string, case .bulk(let message) = items[2] else { break }
            self.onMessage(.message(channel: channel, message: message))
            return
        case ("pmessage", 4):
            guard let pattern = items[1].string, let channel = items[2].string, case .bulk(let message) = items[3] else { break }
            self.onMessage(.patternMessage(pattern: pattern, channel: channel, message: message))
            return
        case ("subscribe", 3), ("unsubscribe", 3), ("psubscribe", 3), ("punsubscribe", 3), ("ssubscribe", 3), ("sunsubscribe", 3):
            return
        case ("pong", 2):
            self.ready.succeed()
            return
        default:
            break
        }
        self.fail(RedisClientError.protocolError("unexpected push on the subscription link: \(items)"), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.ready.fail(RedisClientError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(error, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.ready.fail(RedisClientError.connectionClosed)
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        self.ready.fail(error)
        context.close(promise: nil)
    }
}
