import NIOCore

/// Turns the bytes Redis sends into ``RedisReply`` values with hiredis's RESP reader.
///
/// A plain inbound handler rather than a `ByteToMessageDecoder`: hiredis buffers partial replies
/// itself, so every read is handed over whole and nothing is kept on the Swift side.
final class RESPReaderHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = RedisReply

    private var reader: RESPReader?

    func handlerAdded(context: ChannelHandlerContext) {
        self.reader = RESPReader()
        if self.reader == nil {
            self.fail(RedisClientError.protocolError("out of memory for the RESP reader"), context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.reader = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let reader = self.reader else { return }
        do {
            try reader.feed(self.unwrapInboundIn(data))
            // A reply handler may close the channel and remove this handler while we loop.
            while let current = self.reader, let reply = try current.next(allocator: context.channel.allocator) {
                context.fireChannelRead(self.wrapInboundOut(reply))
            }
        } catch {
            self.fail(error, context: context)
        }
    }

    /// hiredis keeps a protocol error forever, so the connection is of no further use.
    private func fail(_ error: Error, context: ChannelHandlerContext) {
        self.reader = nil
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}
