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
///
/// A frame larger than one read is assembled in linear time. The decoder is handed a frame
/// only once its header is whole, so the reader knows the payload's length when it keeps the
/// first part. The parts that follow are copied into chunks that grow with what has arrived,
/// never beyond the payload's length, and joined once the last part is in: each payload byte
/// is copied at most twice, and a client that announces a large frame and sends little of it
/// makes the reader hold at most twice what it sent, not the announced length.
final class WebSocketFrameReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = WebSocketFrame

    private enum State {
        /// Between frames: nothing kept.
        case idle
        /// The first bytes of a frame header, too few to tell the payload's length.
        case header(ByteBuffer)
        /// The decoder has read a frame's header and waits for its payload: `chunks` hold the
        /// part that has arrived, `missing` bytes are still to come.
        case payload(chunks: [ByteBuffer], missing: Int)
        /// The decoder threw: the stream cannot be resynchronised, later bytes are dropped.
        case failed
    }

    private let decoder: WebSocketFrameDecoder
    private var state = State.idle
    /// Bytes copied out of reads and between chunks since the connection opened: the tests'
    /// measure of how much work assembling a frame takes.
    private(set) var bytesCopied = 0

    init(maxFrameSize: Int) {
        self.decoder = WebSocketFrameDecoder(maxFrameSize: maxFrameSize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        do {
            switch self.state {
            case .failed:
                return
            case .idle:
                break
            case .header(var start):
                self.state = .idle
                guard try self.finishHeader(&start, from: &bytes, context: context) else { return }
            case .payload(var chunks, let missing):
                // Leave the state first, so that the chunks are not shared and copied on write.
                self.state = .idle
                let part = bytes.readSlice(length: min(missing, bytes.readableBytes))!
                self.append(part, to: &chunks, missing: missing, context: context)
                guard part.readableBytes == missing else {
                    self.state = .payload(chunks: chunks, missing: missing - part.readableBytes)
                    return
                }
                var payload = self.join(chunks, context: context)
                try self.decodeWholeFrame(&payload, context: context)
            }
            try self.readFrames(from: &bytes, context: context)
        } catch {
            self.state = .failed
            context.fireErrorCaught(error)
        }
    }

    /// Decodes the frames in `bytes`, which start at a frame boundary, and keeps the start of
    /// an incomplete last one.
    private func readFrames(from bytes: inout ByteBuffer, context: ChannelHandlerContext) throws {
        while bytes.readableBytes > 0 {
            guard let header = FrameHeader(peeking: bytes) else {
                self.state = .header(self.copy(bytes, capacity: FrameHeader.maximumSize, context: context))
                return
            }
            // `decode` fires a complete frame down the pipeline and says `.continue`. Otherwise
            // it has read the header and waits for the payload, part of which is in `bytes`.
            guard case .needMoreData = try self.decoder.decode(context: context, buffer: &bytes) else { continue }
            self.keepPayload(bytes, length: header.payloadLength, context: context)
            return
        }
    }

    /// Completes a frame header kept from earlier reads with the first bytes of `bytes`, hands
    /// it to the decoder, and then the payload if `bytes` holds all of it. False when the frame
    /// is still incomplete (and kept); true when `bytes` continues at the next frame.
    private func finishHeader(_ start: inout ByteBuffer, from bytes: inout ByteBuffer,
                              context: ChannelHandlerContext) throws -> Bool {
        // Two rounds at most: the first two bytes tell how long the rest of the header is.
        while FrameHeader(peeking: start) == nil, bytes.readableBytes > 0 {
            let wanted = (FrameHeader.size(peeking: start) ?? 2) - start.readableBytes
            var part = bytes.readSlice(length: min(wanted, bytes.readableBytes))!
            self.bytesCopied += part.readableBytes
            start.writeBuffer(&part)
        }
        guard let header = FrameHeader(peeking: start) else {
            self.state = .header(start)
            return false
        }
        if case .continue = try self.decoder.decode(context: context, buffer: &start) {
            return true
        }
        guard bytes.readableBytes >= header.payloadLength else {
            self.keepPayload(bytes, length: header.payloadLength, context: context)
            return false
        }
        var payload = bytes.readSlice(length: header.payloadLength)!
        try self.decodeWholeFrame(&payload, context: context)
        return true
    }

    /// Hands the decoder, which waits for a payload, exactly that payload.
    private func decodeWholeFrame(_ payload: inout ByteBuffer, context: ChannelHandlerContext) throws {
        let state = try self.decoder.decode(context: context, buffer: &payload)
        assert(state == .continue && payload.readableBytes == 0, "the decoder takes the whole payload it waits for")
    }

    /// Keeps the first part of a payload of `length` bytes, all of `bytes`, out of the read buffer.
    private func keepPayload(_ bytes: ByteBuffer, length: Int, context: ChannelHandlerContext) {
        var chunks: [ByteBuffer] = []
        self.append(bytes, to: &chunks, missing: length, context: context)
        self.state = .payload(chunks: chunks, missing: length - bytes.readableBytes)
    }

    /// Copies `part` after `chunks`, into the last chunk while it has room, else into a new
    /// chunk as large as everything before it (so there are few chunks) but no larger than the
    /// `missing` rest of the payload (so none is allocated that the client has not earned).
    /// `part` holds at most `missing` bytes.
    private func append(_ part: ByteBuffer, to chunks: inout [ByteBuffer], missing: Int,
                        context: ChannelHandlerContext) {
        guard part.readableBytes > 0 else { return }
        self.bytesCopied += part.readableBytes
        if let last = chunks.indices.last, chunks[last].writableBytes >= part.readableBytes {
            chunks[last].writeImmutableBuffer(part)
            return
        }
        let received = chunks.reduce(0) { $0 + $1.readableBytes }
        var chunk = context.channel.allocator.buffer(capacity: min(missing, max(part.readableBytes, received)))
        chunk.writeImmutableBuffer(part)
        chunks.append(chunk)
    }

    /// The chunks as one buffer: a payload must be contiguous for the decoder.
    private func join(_ chunks: [ByteBuffer], context: ChannelHandlerContext) -> ByteBuffer {
        if chunks.count == 1 { return chunks[0] }
        let length = chunks.reduce(0) { $0 + $1.readableBytes }
        var payload = context.channel.allocator.buffer(capacity: length)
        for chunk in chunks { payload.writeImmutableBuffer(chunk) }
        self.bytesCopied += length
        return payload
    }

    private func copy(_ bytes: ByteBuffer, capacity: Int, context: ChannelHandlerContext) -> ByteBuffer {
        var copy = context.channel.allocator.buffer(capacity: max(capacity, bytes.readableBytes))
        copy.writeImmutableBuffer(bytes)
        self.bytesCopied += bytes.readableBytes
        return copy
    }
}

/// What the reader needs to know of a frame header before the decoder reads it (RFC 6455
/// §5.2): its size, and the payload length it announces. The decoder checks the rest.
struct FrameHeader {
    /// Two bytes, eight of extended length, four of masking key.
    static let maximumSize = 14

    let payloadLength: Int

    /// The header at `bytes`' reader index, or nil while some of it has yet to arrive.
    init?(peeking bytes: ByteBuffer) {
        guard let size = Self.size(peeking: bytes), bytes.readableBytes >= size else { return nil }
        let index = bytes.readerIndex
        switch bytes.getInteger(at: index + 1, as: UInt8.self)! & 0x7F {
        case 126:
            self.payloadLength = Int(bytes.getInteger(at: index + 2, as: UInt16.self)!)
        case 127:
            // Beyond any frame size limit: the decoder refuses it.
            self.payloadLength = Int(clamping: bytes.getInteger(at: index + 2, as: UInt64.self)!)
        case let length:
            self.payloadLength = Int(length)
        }
    }

    /// The size of the header at `bytes`' reader index, once its first two bytes are there.
    static func size(peeking bytes: ByteBuffer) -> Int? {
        guard let second = bytes.getInteger(at: bytes.readerIndex + 1, as: UInt8.self) else { return nil }
        let masked = second & 0x80 != 0
        let extended = switch second & 0x7F {
        case 126: 2
        case 127: 8
        default: 0
        }
        return 2 + extended + (masked ? 4 : 0)
    }
}
