import NIOCore
import NIOPosix

/// A `reply` line: its outcome and the one result field the scenarios read.
struct BackendReply: Sendable {
    var ok: Bool
    var count: Int?
    var line: String
}

/// The benchmark's backend on sidecast's Unix socket (proto/PROTOCOL.md): says hello, reports
/// connects and events, matches replies to requests by `id`, and writes command lines. Reads
/// only the fields it needs with `JSONScan`, so it costs the load generator little.
final class BackendHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A client's socket connected; `client` is the `bench` query parameter the client sent.
    var onConnect: ((_ sid: String, _ client: Int) -> Void)?
    /// A client emitted an event carrying a benchmark payload.
    var onEvent: ((_ sid: String, _ sent: UInt64, _ sequence: Int) -> Void)?

    private(set) var linesWritten = 0
    private(set) var errorLines = 0
    /// `event` lines received.
    private(set) var eventsReceived = 0
    private(set) var firstError: String?
    private var context: ChannelHandlerContext?
    private let welcome: EventLoopPromise<Void>
    private var pending: [Int: EventLoopPromise<BackendReply>] = [:]
    private var nextID = 1
    private var flood: Flood?

    /// Writes lines as fast as sidecast takes them, yielding to the event loop between batches
    /// so the clients on the same loop keep draining.
    private struct Flood {
        var deadline: NIODeadline
        var makeLine: (Int) -> String
        var written = 0
        var done: EventLoopPromise<Int>
    }

    init(welcome: EventLoopPromise<Void>) {
        self.welcome = welcome
    }

    /// Attaches a backend serving `/` to the sidecar's socket at `path`; the future completes
    /// with the channel once sidecast answered `welcome`.
    static func attach(path: String, on loop: EventLoop) -> EventLoopFuture<Channel> {
        let welcome = loop.makePromise(of: Void.self)
        return ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NDJSONLineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(BackendHandler(welcome: welcome))
                }
            }
            .connect(unixDomainSocketPath: path)
            .flatMap { channel in welcome.futureResult.map { channel } }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        send(#"{"type":"hello","version":1,"nsps":["/"],"group":"bench"}"#)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = BenchError("the backend connection closed")
        welcome.fail(error)
        for promise in pending.values { promise.fail(error) }
        pending.removeAll()
        flood?.done.fail(error)
        flood = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        switch JSONScan.string(named: "type", in: line) {
        case "event":
            eventsReceived += 1
            if let sid = JSONScan.string(named: "sid", in: line), let (sent, sequence) = Payload.read(line) {
                onEvent?(sid, sent, sequence)
            }
        case "connect":
            if let sid = JSONScan.string(named: "sid", in: line),
                let client = JSONScan.string(named: "bench", in: line).flatMap({ Int($0) })
            {
                onConnect?(sid, client)
            }
        case "reply":
            guard let id = JSONScan.integer(named: "id", in: line), let promise = pending.removeValue(forKey: Int(id)) else {
                return
            }
            let text = String(buffer: line)
            let count = JSONScan.integer(named: "count", in: line).map { Int($0) }
            promise.succeed(BackendReply(ok: text.contains(#""ok":true"#), count: count, line: text))
        case "welcome":
            welcome.succeed()
        case "error":
            errorLines += 1
            if firstError == nil { firstError = String(buffer: line) }
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { continueFlood() }
        context.fireChannelWritabilityChanged()
    }

    /// Writes one command line.
    func send(_ line: String) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: line.utf8.count + 1)
        buffer.writeString(line)
        buffer.writeInteger(UInt8(ascii: "\n"))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        linesWritten += 1
    }

    /// Sends `command`, a JSON object, with a fresh `id` added; completes with sidecast's `reply`.
    func request(_ command: String) -> EventLoopFuture<BackendReply> {
        guard let context else { return welcome.futureResult.eventLoop.makeFailedFuture(BenchError("backend not attached")) }
        let id = nextID
        nextID += 1
        let promise = context.eventLoop.makePromise(of: BackendReply.self)
        pending[id] = promise
        precondition(command.hasSuffix("}"))
        send(String(command.dropLast()) + ",\"id\":\(id)}")
        return promise.futureResult
    }

    /// Writes `makeLine(0)`, `makeLine(1)`, … as fast as sidecast accepts them until `deadline`;
    /// completes with the number of lines written.
    func startFlood(until deadline: NIODeadline, makeLine: @escaping (Int) -> String) -> EventLoopFuture<Int> {
        let done = welcome.futureResult.eventLoop.makePromise(of: Int.self)
        flood = Flood(deadline: deadline, makeLine: makeLine, done: done)
        continueFlood()
        return done.futureResult
    }

    private func continueFlood() {
        guard let context, var flood else { return }
        let batch = 64
        var buffer = context.channel.allocator.buffer(capacity: batch * 160)
        while context.channel.isWritable, NIODeadline.now() < flood.deadline {
            buffer.clear()
            for _ in 0..<batch {
                buffer.writeString(flood.makeLine(flood.written))
                buffer.writeInteger(UInt8(ascii: "\n"))
                flood.written += 1
            }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            linesWritten += batch
            self.flood = flood
            // Let the clients on this loop read before the next batch.
            context.eventLoop.assumeIsolated().execute { self.continueFlood() }
            return
        }
        guard NIODeadline.now() >= flood.deadline else { return }  // Not writable: wait for the change.
        self.flood = nil
        flood.done.succeed(flood.written)
    }
}

/// Splits the byte stream into NDJSON lines, without the `"\n"`.
struct NDJSONLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMoreData }
        let length = newline - buffer.readerIndex
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(NIOAny(line))
        return .continue
    }
}
