import CPrefetch
import DequeModule
import Logging
import NIOCore
import NIOWebSocket

/// The WebSocket transport of one session (or of an upgrade in progress): turns complete
/// frames into packets for the session and packets into frames, answers ping frames and the
/// close handshake. Sits behind `WebSocketFrameReader` (and `NIOWebSocketFrameAggregator` once
/// a client fragments a message), last in the pipeline, so it sees the channel's read requests
/// first and can hold them back while the session's reading is paused, as NIO's
/// `BackPressureHandler` does.
final class WebSocketTransportHandler: ChannelDuplexHandler, WebSocketTransport {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    // Stored properties are laid out in the order written, and a flag between two pointers
    // takes 8 bytes: the pointers come first and the flags together after them, so that the
    // handler takes 98 bytes, a 112-byte block of malloc's (104 usable), not a 128-byte one.

    /// The session this WebSocket serves or is upgrading; cleared once the connection is gone.
    var session: EngineIOSession? {
        didSet {
            if let session { self.speaksV3 = session.version != .v4 }
        }
    }
    /// Instead of `session`: the session of another shard or node this WebSocket serves.
    var relay: (any SessionLink)? {
        didSet {
            if let relay { self.speaksV3 = relay.version != .v4 }
        }
    }
    /// For its logger: a `Logger` kept here would cost every connection 56 bytes.
    private let server: EngineIOServer
    private var context: ChannelHandlerContext?
    /// Where frames encoded in advance (`EngineIOMessage.encodedFrame`) go, past NIO's encoder.
    private var encodedFrames: EncodedFrameWriter?
    /// Made at the client's first compressed message.
    private var inflater: WebSocketInflater?
    /// Frames the channel had already read when reading was paused, delivered at resume.
    /// Empty, without storage, unless paused.
    private var heldFrames: Deque<WebSocketFrame> = []

    /// Kept apart from `session` so that a delivery reads one flag rather than the session.
    private var speaksV3 = false
    /// The channel's writability, kept here because it is asked once per delivery.
    private var isWritable = true
    private var closeSent = false
    private var hasAggregator = false
    /// permessage-deflate, when the client offered it and the server has it on: how the client
    /// compresses. One byte rather than the agreement, whose header string every connection
    /// would keep.
    var compression: PerMessageDeflate.ClientContext?
    /// Whether the fragmented message NIO's aggregator is joining was compressed: the
    /// aggregator drops RSV1, so `CompressedFragmentMarker` notes it from the first fragment.
    var isJoiningCompressedMessage = false
    /// Written frames wait for `flushNow`, which the server calls once per event loop round.
    private var flushPending = false
    private var isReadingPaused = false
    /// A read request held back while paused, passed on at resume.
    private var readHeldBack = false
    private let handlersAhead: Bool

    /// - Parameter handlersAhead: whether handlers (TLS) sit ahead of NIO's frame encoder,
    ///   which every frame must pass.
    init(server: EngineIOServer, handlersAhead: Bool) {
        self.server = server
        self.handlersAhead = handlersAhead
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let encoder = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self) {
            self.encodedFrames = self.handlersAhead ? .encoder(encoder) : .channel(context.channel._channelCore)
        }
        self.isWritable = context.channel.isWritable
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // The channel holds the pipeline, which holds this handler.
        self.encodedFrames = nil
        self.heldFrames = []
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = Self.unwrapInboundIn(data)
        if !self.hasAggregator, !frame.fin || frame.opcode == .continuation {
            self.addAggregator(context: context, passing: frame)
            return
        }
        if self.isJoiningCompressedMessage, frame.opcode == .text || frame.opcode == .binary {
            // The joined message: marked again, as it was sent, so that it is inflated.
            self.isJoiningCompressedMessage = false
            frame.rsv1 = true
        }
        if self.isReadingPaused || !self.heldFrames.isEmpty {
            self.heldFrames.append(frame)
        } else {
            self.process(frame, context: context)
        }
    }

    /// Browsers and Socket.IO clients send every message in one frame, so NIO's aggregator
    /// joins the pipeline only when a first fragment comes: until then a connection saves the
    /// ~160 bytes of the aggregator and its context. The fragment is passed to it from the
    /// reader's context, as if it had been there all along.
    private func addAggregator(context: ChannelHandlerContext, passing fragment: WebSocketFrame) {
        self.hasAggregator = true
        let aggregator = NIOWebSocketFrameAggregator(
            minNonFinalFragmentSize: 0,
            maxAccumulatedFrameCount: 1024,
            maxAccumulatedFrameSize: self.server.configuration.maxPayload
        )
        do {
            try context.pipeline.syncOperations.addHandler(aggregator, position: .before(self))
            if self.compression != nil {
                try context.pipeline.syncOperations.addHandler(CompressedFragmentMarker(transport: self), position: .before(aggregator))
            }
            let reader = try context.pipeline.syncOperations.context(handlerType: WebSocketFrameReader.self)
            reader.fireChannelRead(NIOAny(fragment))
        } catch {
            self.errorCaught(context: context, error: error)
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.isReadingPaused {
            self.readHeldBack = true
        } else {
            context.read()
        }
    }

    // MARK: - Flow control

    func pauseReading() {
        self.isReadingPaused = true
    }

    /// Delivers the held frames until done or paused again, then lets the channel read.
    func resumeReading() {
        guard self.isReadingPaused, let context = self.context else { return }
        self.isReadingPaused = false
        // Taken off before it is processed: a pause and resume from a callback carries on
        // from the next frame.
        while !self.isReadingPaused, let frame = self.heldFrames.popFirst() {
            self.process(frame, context: context)
        }
        if self.heldFrames.isEmpty {
            self.heldFrames = []
        }
        if !self.isReadingPaused && self.readHeldBack {
            self.readHeldBack = false
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.isWritable = context.channel.isWritable
        self.relay?.report(isWritable: self.isWritable, bufferedBytes: self.bufferedBytes)
        context.fireChannelWritabilityChanged()
    }

    /// Whether more than `limit` bytes wait in the channel. A writable channel holds less than
    /// its high-water mark (NIO's default is 64 KiB), so for limits at least that large the
    /// answer costs one flag read instead of an option lookup: this runs once per delivery.
    func isBuffering(moreThan limit: Int) -> Bool {
        if limit >= Self.defaultHighWatermark, self.isWritable { return false }
        return self.bufferedBytes > limit
    }

    private static let defaultHighWatermark = 64 * 1024

    /// Bytes written to the channel and not yet taken by the kernel.
    var bufferedBytes: Int {
        guard let options = self.context?.channel.syncOptions else { return 0 }
        return (try? options.getOption(.bufferedWritableBytes)) ?? 0
    }

    // MARK: - Frames

    private func process(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        if frame.rsv1 {
            self.processCompressed(frame, context: context)
            return
        }
        switch frame.opcode {
        case .text:
            let packet = !self.speaksV3
                ? EngineIOPacket(text: frame.unmaskedPayload) : EngineIOPacket(v3Text: frame.unmaskedPayload)
            self.received(packet)
        case .binary:
            let packet = !self.speaksV3
                ? .binary(frame.unmaskedPayload) : EngineIOv3Payload.decodeBinaryFrame(frame.unmaskedPayload)
            self.received(packet)
        case .ping:
            guard !self.closeSent else { return }
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedPayload)
            context.writeAndFlush(Self.wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            self.answerClose(frame, context: context)
        default:
            break
        }
    }

    private func received(_ packet: EngineIOPacket?) {
        if let relay = self.relay {
            relay.received(packet)
        } else {
            self.session?.webSocket(self, didReceive: packet)
        }
    }

    /// A message with RSV1 set: permessage-deflate compressed, allowed only on a data frame of
    /// a connection that agreed to the extension (RFC 7692 §6.1).
    private func processCompressed(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        guard let compression = self.compression, frame.opcode == .text || frame.opcode == .binary else {
            self.errorCaught(context: context, error: PerMessageDeflateError.unexpectedCompression)
            return
        }
        let data: ByteBuffer
        do {
            let inflater = try self.inflater ?? WebSocketInflater(resetsEachMessage: compression == .resetEachMessage)
            self.inflater = inflater
            data = try inflater.inflate(frame.unmaskedPayload, limit: self.server.configuration.maxPayload)
        } catch {
            self.errorCaught(context: context, error: error)
            return
        }
        if frame.opcode == .text {
            self.received(EngineIOPacket(text: data))
        } else {
            self.received(.binary(data))
        }
    }

    // MARK: - Connection events

    func channelInactive(context: ChannelHandlerContext) {
        let session = self.session
        self.session = nil
        session?.webSocketDidClose(self)
        let relay = self.relay
        self.relay = nil
        relay?.closed()
        context.fireChannelInactive()
    }

    /// Frame errors arrive here first (the upgrader's automatic error handling is off), so
    /// the session learns of a "transport error" before the connection goes away.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.server.logger.info("websocket error", metadata: ["error": "\(error)"])
        // Detach first: the close below may end the connection at once, which must not
        // count as a clean "transport close". The status is sent before the session's own
        // close could send a normal one.
        let session = self.session
        self.session = nil
        let relay = self.relay
        self.relay = nil
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge,
            WebSocketInflater.Failure.tooLarge:
            self.close(code: .messageTooLarge)
        default:
            self.close(code: .protocolError)
        }
        session?.webSocketDidFail(self)
        relay?.failed()
    }

    func write(_ messages: ArraySlice<EngineIOMessage>) {
        self.writeFrames(messages)
    }

    func write(_ message: EngineIOMessage) {
        self.writeFrames(CollectionOfOne(message))
    }

    func write(_ messages: ArraySlice<EngineIOMessage>, unlessBufferingMoreThan limit: Int) -> Bool {
        guard !self.isBuffering(moreThan: limit) else { return false }
        self.writeFrames(messages)
        return true
    }

    /// Writes each message as its own frame, text or binary.
    func writeFrames(_ messages: some Collection<EngineIOMessage>) {
        guard !self.closeSent, let context = self.context else { return }
        // By index, reading only the parts a message needs: a copy of the whole message
        // would retain both of its buffers, once per delivery.
        for index in messages.indices {
            if self.speaksV3, case .binary(let data) = messages[index].storage {
                // A v3 binary frame starts with the packet type (and is sent uncompressed).
                let frame = WebSocketFrame(fin: true, opcode: .binary, data: EngineIOv3Payload.binaryFrame(data))
                context.write(Self.wrapOutboundOut(frame), promise: nil)
            } else if self.compression != nil, let encodedFrames = self.encodedFrames,
               let deflated = self.server.compressors.deflatedFrame(for: messages[index]) {
                encodedFrames.write(deflated)
            } else if let encodedFrames = self.encodedFrames, let encoded = messages[index].encodedFrame {
                encodedFrames.write(encoded)
            } else {
                context.write(Self.wrapOutboundOut(messages[index].webSocketFrame), promise: nil)
            }
        }
        guard !self.flushPending else { return }
        self.flushPending = true
        self.server.flushSoon(self)
    }

    func prefetchChannel() {
        if case .channel(let core) = self.encodedFrames {
            sidecast_prefetch(Unmanaged<AnyObject>.passUnretained(core).toOpaque())
        }
    }

    /// Flushes what `write` left unflushed. Writes wait for the end of the event loop's
    /// current round, so the emits of one backend read cost each client one syscall.
    func flushNow() {
        self.flushPending = false
        switch self.encodedFrames {
        case .channel(let core): core.flush0()
        case .encoder(let encoder): encoder.flush()
        case nil: self.context?.flush()
        }
        // A relayed client that does not keep up: its session's shard follows the backlog.
        if let relay = self.relay, !self.isWritable {
            relay.report(isWritable: false, bufferedBytes: self.bufferedBytes)
        }
    }

    func close() {
        self.close(code: .normalClosure)
    }

    /// Sends a close frame after what was written before, then closes the connection.
    func close(code: WebSocketErrorCode) {
        guard !self.closeSent, let context = self.context else { return }
        self.closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(Self.wrapOutboundOut(frame)).whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }

    /// The client started the close handshake: echo its status code and close.
    private func answerClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        if self.closeSent {
            context.close(promise: nil)
            return
        }
        self.closeSent = true
        var data = frame.unmaskedPayload
        let code = data.readSlice(length: 2) ?? ByteBuffer()
        let reply = WebSocketFrame(fin: true, opcode: .connectionClose, data: code)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(Self.wrapOutboundOut(reply)).whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }
}

/// Sits before NIO's frame aggregator on a connection with permessage-deflate. RSV1 marks a
/// compressed message on its first frame only (RFC 7692 §6.1), and the aggregator, joining the
/// fragments, drops it: this tells the transport, which the joined message reaches next, before
/// any other message can come.
final class CompressedFragmentMarker: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private weak var transport: WebSocketTransportHandler?

    init(transport: WebSocketTransportHandler) {
        self.transport = transport
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        if !frame.fin, frame.opcode == .text || frame.opcode == .binary {
            self.transport?.isJoiningCompressedMessage = frame.rsv1
        }
        context.fireChannelRead(data)
    }
}

extension EngineIOMessage {
    /// The message as one WebSocket frame, text or binary.
    var webSocketFrame: WebSocketFrame {
        switch self.storage {
        case .text(let buffer): WebSocketFrame(fin: true, opcode: .text, data: buffer)
        case .binary(let data): WebSocketFrame(fin: true, opcode: .binary, data: data)
        }
    }
}

/// Where a WebSocket writes frames encoded in advance, past NIO's frame encoder.
private enum EncodedFrameWriter {
    /// From the encoder's context, through the handlers ahead of it (TLS).
    case encoder(ChannelHandlerContext)
    /// Straight to the channel, when nothing sits ahead of the encoder: what NIO's head handler
    /// would do with the write, without the two contexts a write and a flush pass on the way
    /// (a fifth of the instructions of a broadcast delivery, BENCHMARKS.md). NIO marks
    /// `_channelCore` as meant for its own handlers; these are the calls its head handler
    /// makes, on the channel's loop, with the same data.
    case channel(ChannelCore)

    func write(_ frame: ByteBuffer) {
        switch self {
        case .encoder(let encoder): encoder.write(NIOAny(frame), promise: nil)
        case .channel(let core): core.write0(NIOAny(frame), promise: nil)
        }
    }
}
