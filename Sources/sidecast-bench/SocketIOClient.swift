import CompressNIO
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// What a client tells the load generator. Implemented by `Load`, on the load event loop.
protocol ClientDelegate: AnyObject {
    func clientConnected(_ client: SocketIOClientHandler, sid: String, pid: String?)
    /// The CONNECT packet client `index` sends: "40", or with an auth object.
    func connectPacket(for index: Int) -> String
    func clientReceivedEvent(_ client: SocketIOClientHandler, packet: ByteBuffer)
    /// Bytes of a text frame's payload as they came over the wire.
    func clientReceivedBytes(_ count: Int)
    func clientFailed(_ index: Int, reason: String)
    func clientClosed(_ client: SocketIOClientHandler)
}

/// A minimal Socket.IO v5 client on Engine.IO v4 over WebSocket, for the main namespace only:
/// reads the open packet, sends CONNECT, waits for the server's CONNECT, answers pings and
/// hands EVENT packets to its delegate unparsed.
final class SocketIOClientHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private enum State {
        case awaitingOpen
        case awaitingConnect
        case connected
        case closed
    }

    let index: Int
    /// Which sidecar (cluster node) this client is connected to.
    let node: Int
    private let delegate: ClientDelegate
    private var state = State.awaitingOpen
    private var context: ChannelHandlerContext?
    /// Inflates permessage-deflate messages (RFC 7692) when the client offered the extension.
    private let inflater: ZlibDecompressor?

    init(index: Int, node: Int, delegate: ClientDelegate, inflates: Bool) throws {
        self.index = index
        self.node = node
        self.delegate = delegate
        self.inflater = inflates ? try ZlibDecompressor(algorithm: .deflate, windowSize: 15) : nil
    }

    /// Opens one client from `source` (a 127.0.0.x address) to the sidecar at `host:port`; the
    /// delegate hears how it went. `query` is appended to the Engine.IO URL so the backend can
    /// tell clients apart in its `connect` messages.
    static func connect(
        index: Int,
        node: Int,
        host: String,
        port: Int,
        source: String,
        query: String,
        delegate: NIOLoopBound<Load>
    ) {
        let loop = delegate.eventLoop
        let bootstrap: ClientBootstrap
        do {
            bootstrap = try ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(to: SocketAddress(ipAddress: source, port: 0))
        } catch {
            delegate.value.clientFailed(index, reason: "bad source address \(source): \(error)")
            return
        }
        bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(
                    maxFrameSize: 1 << 20,
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            let handler = try SocketIOClientHandler(
                                index: index, node: node, delegate: delegate.value, inflates: delegate.value.offersDeflate
                            )
                            try channel.pipeline.syncOperations.addHandler(handler)
                            return true
                        }
                    }
                )
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(host):\(port)")
                if delegate.value.offersDeflate {
                    // What browsers offer.
                    headers.add(name: "Sec-WebSocket-Extensions", value: "permessage-deflate; client_max_window_bits")
                }
                let head = HTTPRequestHead(
                    version: .http1_1,
                    method: .GET,
                    uri: "/socket.io/?EIO=4&transport=websocket&\(query)",
                    headers: headers
                )
                let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
                    upgradeRequestHead: head,
                    upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) }
                )
                // Sidecast writes the Engine.IO open packet right behind the 101 response: keep the
                // bytes that arrive with it.
                var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                pipeline.leftOverBytesStrategy = .forwardBytes
                let upgraded = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                    configuration: pipeline
                )
                upgraded.assumeIsolated().whenComplete { result in
                    switch result {
                    case .success(true):
                        break
                    case .success(false):
                        delegate.value.clientFailed(index, reason: "WebSocket upgrade refused")
                        channel.close(promise: nil)
                    case .failure(let error):
                        delegate.value.clientFailed(index, reason: "WebSocket upgrade failed: \(error)")
                        channel.close(promise: nil)
                    }
                }
            }
        }
        .connect(host: host, port: port)
        .whenFailure { error in
            delegate.value.clientFailed(index, reason: "connect: \(error)")
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .connected:
            delegate.clientClosed(self)
        case .awaitingOpen, .awaitingConnect:
            delegate.clientFailed(index, reason: "closed during the Socket.IO handshake")
        case .closed:
            break
        }
        state = .closed
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            delegate.clientReceivedBytes(frame.length)
            if frame.rsv1 {
                guard let packet = inflate(frame.unmaskedData) else {
                    context.close(promise: nil)
                    return
                }
                engineIOPacket(packet, context: context)
            } else {
                engineIOPacket(frame.unmaskedData, context: context)
            }
        case .ping:
            write(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData), context: context)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    /// A compressed message's payload: the sync-flush tail the sender removed put back, then
    /// inflated. The server compresses each message on its own (server_no_context_takeover), so
    /// the inflater starts afresh each time.
    private func inflate(_ payload: ByteBuffer) -> ByteBuffer? {
        guard let inflater else { return nil }
        var input = payload
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        var output = ByteBuffer()
        output.reserveCapacity(max(1024, payload.readableBytes * 8))
        do {
            try inflater.reset()
            while true {
                do {
                    try inflater.inflate(from: &input, to: &output)
                    return output
                } catch let error as CompressNIOError where error == .bufferOverflow {
                    output.reserveCapacity(output.capacity * 2)
                } catch let error as CompressNIOError where error == .inputBufferOverflow && input.readableBytes == 0 {
                    return output
                }
            }
        } catch {
            return nil
        }
    }

    /// Sends a Socket.IO EVENT packet; `arguments` is the JSON array after the event name.
    func emit(event: String, argumentsJSON arguments: String) {
        guard let context, case .connected = state else { return }
        send("42[\"\(event)\",\(arguments)]", context: context)
    }

    func close() {
        context?.close(promise: nil)
    }

    private func engineIOPacket(_ packet: ByteBuffer, context: ChannelHandlerContext) {
        let bytes = packet.readableBytesView
        guard let type = bytes.first else { return }
        switch (type, state) {
        case (UInt8(ascii: "0"), .awaitingOpen):
            state = .awaitingConnect
            send(delegate.connectPacket(for: index), context: context)
        case (UInt8(ascii: "2"), _):
            send("3", context: context)
        case (UInt8(ascii: "4"), _):
            socketIOPacket(packet, context: context)
        case (UInt8(ascii: "1"), _):
            context.close(promise: nil)
        default:
            break
        }
    }

    private func socketIOPacket(_ packet: ByteBuffer, context: ChannelHandlerContext) {
        let bytes = packet.readableBytesView
        guard bytes.count >= 2 else { return }
        switch (bytes[bytes.startIndex + 1], state) {
        case (UInt8(ascii: "2"), .connected), (UInt8(ascii: "2"), .awaitingConnect):
            // Before the CONNECT reply: the events a recovering client missed, replayed.
            delegate.clientReceivedEvent(self, packet: packet)
        case (UInt8(ascii: "0"), .awaitingConnect):
            state = .connected
            delegate.clientConnected(
                self, sid: JSONScan.string(named: "sid", in: packet) ?? "", pid: JSONScan.string(named: "pid", in: packet)
            )
        case (UInt8(ascii: "4"), _):
            state = .closed
            delegate.clientFailed(index, reason: "CONNECT_ERROR \(String(buffer: packet))")
            context.close(promise: nil)
        case (UInt8(ascii: "1"), _):
            context.close(promise: nil)
        default:
            break
        }
    }

    private func send(_ text: String, context: ChannelHandlerContext) {
        let data = context.channel.allocator.buffer(string: text)
        write(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: data), context: context)
    }

    private func write(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
}
