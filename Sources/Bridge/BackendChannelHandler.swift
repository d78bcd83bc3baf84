import Logging
import NIOCore
import SidecastJSON

/// What one read from a backend said, parsed on the connection's loop for the bridge's.
enum BackendLine: Sendable {
    case hello(BackendCommand.Hello)
    case request(BackendRequest)
    case failed(BackendLineError)
    case tooLong(Int)
}

/// Sets up accepted backend connections, on whichever of the node's loops each was given.
/// Made on the bridge's loop; used on any.
public struct BackendChannels: Sendable {
    let bridge: NIOLoopBound<Bridge>
    let helloTimeout: TimeAmount
    let maxLineLength: Int
    let logger: Logger

    /// Adds the NDJSON framing and the backend handler to an accepted Unix-socket channel.
    /// Call on the channel's loop, inside the bootstrap's child channel initializer.
    public func configure(_ channel: Channel) throws {
        let handlers: [ChannelHandler] = [
            ByteToMessageHandler(NDJSONFrameDecoder(maxLineLength: maxLineLength)),
            BackendChannelHandler(channels: self, eventLoop: channel.eventLoop),
        ]
        try channel.pipeline.syncOperations.addHandlers(handlers)
    }
}

/// Reads one backend's lines: `hello` first, then commands for the bridge.
///
/// The connection may be on any of the node's loops. Its lines are parsed here, so backends on
/// several loops parse on several cores; what one read said is handed to the bridge's loop in
/// one hand-off, lines in the order sent, so a backend's commands take effect in that order.
/// While the bridge has not caught up with a few such hand-offs, the connection is not read:
/// a backend that writes faster than the bridge carries out its lines waits in its socket
/// buffer rather than in a queue of the bridge's loop.
final class BackendChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = NDJSONFrame
    /// The lines written to the backend pass through untouched.
    typealias OutboundIn = ByteBuffer

    private enum State {
        case awaitingHello(Scheduled<Void>?)
        case attached
        case closed
    }

    /// Hand-offs of lines the bridge may not have carried out before reading stops.
    static let maximumOutstanding = 4

    private let channels: BackendChannels
    private let onBridgeLoop: Bool
    private var state: State = .awaitingHello(nil)
    /// The connection's backend, on the bridge's loop, from its hello on.
    private let backend: NIOLoopBoundBox<Backend?>
    /// The lines of the read under way.
    private var lines: [BackendLine] = []
    /// Hand-offs the bridge has not carried out yet.
    private var outstanding = 0
    /// A read asked for while too much was outstanding.
    private var readPending = false

    init(channels: BackendChannels, eventLoop: EventLoop) {
        self.channels = channels
        self.onBridgeLoop = channels.bridge.eventLoop === eventLoop
        self.backend = .makeEmptyBox(valueType: Backend.self, eventLoop: channels.bridge.eventLoop)
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: channels.helloTimeout) { [weak self] in
            guard let self, case .awaitingHello = self.state else { return }
            self.refuse(context: loopBoundContext.value, BridgeError(code: "not_hello", message: "no hello within the time limit"), line: "")
        }
        state = .awaitingHello(timer)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state {
        case .awaitingHello(let timer):
            let request: BackendRequest
            switch frame {
            case .tooLong(let bytes):
                return refuse(context: context, .tooLarge(bytes, limit: channels.maxLineLength), line: "")
            case .line(let line):
                if line.readableBytes == 0 { return }
                do {
                    request = try BackendRequest(line: line)
                } catch {
                    let code = error.error.code == "bad_json" ? error.error : BridgeError(code: "not_hello", message: error.error.message)
                    return refuse(context: context, code, line: error.line)
                }
            }
            guard case .hello(let hello) = request.command else {
                return refuse(context: context, BridgeError(code: "not_hello", message: "the first line must be a hello"), line: request.command.type)
            }
            guard hello.version == 1 else {
                return refuse(context: context, BridgeError(code: "unsupported_version", message: "protocol version \(hello.version) is not supported; this sidecast speaks 1"), line: "hello")
            }
            timer?.cancel()
            state = .attached
            lines.append(.hello(hello))
        case .attached:
            switch frame {
            case .tooLong(let bytes):
                lines.append(.tooLong(bytes))
            case .line(let line):
                if line.readableBytes == 0 { return }
                do {
                    lines.append(.request(try BackendRequest(line: line)))
                } catch {
                    lines.append(.failed(error))
                }
            }
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        handOver(context: context, closed: false)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        guard outstanding < Self.maximumOutstanding else {
            readPending = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            toBridge { _, backend in backend.value?.resumePausedSockets() }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .awaitingHello(let timer) = state { timer?.cancel() }
        let attached = if case .attached = state { true } else { false }
        state = .closed
        if attached { handOver(context: context, closed: true) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        channels.logger.info("backend connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    /// Hands the lines read so far (and the news that the connection closed) to the bridge.
    private func handOver(context: ChannelHandlerContext, closed: Bool) {
        guard !lines.isEmpty || closed else { return }
        let said = lines
        lines.removeAll(keepingCapacity: true)
        let channel = context.channel
        guard !onBridgeLoop else {
            return channels.bridge.value.receive(said, closed: closed, backend: backend, channel: channel)
        }
        outstanding += 1
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        toBridge { bridge, backend in
            bridge.receive(said, closed: closed, backend: backend, channel: channel)
            handler.eventLoop.execute { handler.value.carriedOut(context: loopBoundContext.value) }
        }
    }

    /// The bridge carried out one hand-off: a read held back may go ahead.
    private func carriedOut(context: ChannelHandlerContext) {
        outstanding -= 1
        guard case .attached = state else { return }
        if readPending, outstanding < Self.maximumOutstanding {
            readPending = false
            context.read()
        }
    }

    private func toBridge(_ work: @escaping @Sendable (Bridge, NIOLoopBoundBox<Backend?>) -> Void) {
        let (bridge, backend) = (channels.bridge, self.backend)
        if onBridgeLoop {
            work(bridge.value, backend)
        } else {
            bridge.eventLoop.execute { work(bridge.value, backend) }
        }
    }

    /// Answers a connection that never said a proper hello, then closes it.
    private func refuse(context: ChannelHandlerContext, _ error: BridgeError, line: String) {
        if case .awaitingHello(let timer) = state { timer?.cancel() }
        state = .closed
        channels.logger.info("refusing backend connection", metadata: ["code": "\(error.code)", "reason": "\(error.message)"])
        let channel = context.channel
        channel.writeAndFlush(Backend.line(BackendMessage.error(error, line: line), allocator: channel.allocator)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
