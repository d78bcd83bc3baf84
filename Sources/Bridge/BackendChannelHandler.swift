import Logging
import NIOCore
import SidecastJSON

/// Reads one backend's lines: `hello` first, then commands handed to the bridge.
final class BackendChannelHandler: ChannelInboundHandler {
    typealias InboundIn = NDJSONFrame

    private enum State {
        case awaitingHello(Scheduled<Void>?)
        case attached(Backend)
        case closed
    }

    private let bridge: Bridge
    private var state: State = .awaitingHello(nil)

    init(bridge: Bridge) {
        self.bridge = bridge
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: bridge.configuration.helloTimeout) { [weak self] in
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
                return refuse(context: context, .tooLarge(bytes, limit: bridge.configuration.maxLineLength), line: "")
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
            state = .attached(bridge.attach(hello, channel: context.channel))
        case .attached(let backend):
            backend.beginReadBatch()
            switch frame {
            case .tooLong(let bytes):
                backend.send(BackendMessage.error(.tooLarge(bytes, limit: bridge.configuration.maxLineLength), line: ""))
            case .line(let line):
                if line.readableBytes == 0 { return }
                do {
                    bridge.handle(try BackendRequest(line: line), from: backend)
                } catch {
                    bridge.report(error.error, id: error.id, line: error.line, to: backend)
                }
            }
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .attached(let backend) = state {
            backend.endReadBatch()
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .attached(let backend) = state, context.channel.isWritable {
            backend.resumePausedSockets()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .awaitingHello(let timer):
            timer?.cancel()
        case .attached(let backend):
            bridge.detach(backend)
        case .closed:
            break
        }
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        bridge.logger.info("backend connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    /// Answers a connection that never said a proper hello, then closes it.
    private func refuse(context: ChannelHandlerContext, _ error: BridgeError, line: String) {
        if case .awaitingHello(let timer) = state { timer?.cancel() }
        state = .closed
        bridge.logger.info("refusing backend connection", metadata: ["code": "\(error.code)", "reason": "\(error.message)"])
        let channel = context.channel
        channel.writeAndFlush(Backend.line(BackendMessage.error(error, line: line), allocator: channel.allocator)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
