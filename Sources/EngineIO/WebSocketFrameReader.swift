import NIOCore
import NIOWebSocket

/// Runs NIO's `WebSocketFrameDecoder` over a connection's bytes in place of NIO's generic
/// `ByteToMessageHandler`, which the upgrader puts there.
///
/// The decoding is NIO's; only the driving differs. `ByteToMessageHandler` keeps two ring
/// buffers per connection for features this pipeline never uses (re-entrant reads, removal
/// with leftovers, `decodeLast`), about 400 bytes of every idle connection's ~4 KiB. This
/// handler keeps nothing between frames: the bytes of an incomplete frame are copied out of
/// the channel's receive buffer, so NIO can reuse that buffer for the next read.
final class WebSocketFrameReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = WebSocketFrame

    private let decoder: WebSocketFrameDecoder
    /// The start of a frame whose rest has not arrived; nil between frames.
    private var incomplete: ByteBuffer?
    /// Set once the decoder threw: the stream cannot be resynchronised, later bytes are dropped.
    private var failed = false

    init(maxFrameSize: Int) {
        self.decoder = WebSocketFrameDecoder(maxFrameSize: maxFrameSize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        var bytes = Self.unwrapInboundIn(data)
        if var incomplete = self.incomplete {
            self.incomplete = nil
            incomplete.writeBuffer(&bytes)
            bytes = incomplete
        }
        do {
            // `decode` fires each complete frame down the pipeline and says `.continue`; it
            // parses zero-length payloads itself, so an empty buffer ends the loop.
            while bytes.readableBytes > 0, case .continue = try self.decoder.decode(context: context, buffer: &bytes) {}
        } catch {
            self.failed = true
            context.fireErrorCaught(error)
            return
        }
        if bytes.readableBytes > 0 {
            var copy = context.channel.allocator.buffer(capacity: bytes.readableBytes)
            copy.writeImmutableBuffer(bytes)
            self.incomplete = copy
        }
    }
}
