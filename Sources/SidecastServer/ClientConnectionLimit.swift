import Metrics
import NIOCore

/// Counts client connections against `--max-connections` and turns away the ones past it at
/// once, with HTTP 503, rather than let them use the descriptors kept for backends, Redis and
/// the admin listener. Counts TCP connections, as descriptors go: a long-polling client may
/// hold two.
///
/// Confined to the node's event loop: connections are counted as they are accepted.
final class ClientConnectionLimit {
    let maximum: Int
    private(set) var open = 0
    /// Refusals still being answered; past `maximumRefusing` a connection is closed unanswered,
    /// so a flood of clients that never send a request cannot hold descriptors either.
    private var refusing = 0
    private let maximumRefusing = ClientCapacity.adminReserve / 2
    private let refusedFull = Counter(label: "sidecast_connections_refused_total", dimensions: [("reason", "full")])
    /// Connections the client listener accepted and closed at once for want of descriptors.
    static let refusedNoDescriptors = Counter(label: "sidecast_connections_refused_total", dimensions: [("reason", "no_descriptors")])

    init(maximum: Int) {
        self.maximum = maximum
        Gauge(label: "sidecast_max_connections").record(maximum)
    }

    /// Whether new clients are refused now; /readyz says "full" meanwhile.
    var isFull: Bool { open >= maximum }

    /// Counts `channel` as a client and returns true when there is room; otherwise sets it up
    /// to be refused and returns false.
    func admit(_ channel: Channel) throws -> Bool {
        if open < maximum {
            open += 1
            channel.closeFuture.assumeIsolated().whenComplete { [self] _ in open -= 1 }
            return true
        }
        refusedFull.increment()
        guard refusing < maximumRefusing else {
            channel.close(promise: nil)
            return false
        }
        refusing += 1
        channel.closeFuture.assumeIsolated().whenComplete { [self] _ in refusing -= 1 }
        try channel.pipeline.syncOperations.addHandler(FullRefusalHandler())
        return false
    }
}

/// Answers a connection's first request with HTTP 503 "server full" and closes it; one that
/// sends nothing is closed after a second. Reading the request before closing lets the close
/// be a FIN, so the client reads the answer rather than a reset.
final class FullRefusalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let body = #"{"error":"server full"}"#
    private static let response = "HTTP/1.1 503 Service Unavailable\r\n"
        + "Content-Type: application/json\r\n"
        + "Content-Length: \(body.utf8.count)\r\n"
        + "Cache-Control: no-store\r\n"
        + "Connection: close\r\n\r\n"
        + body

    private var answered = false
    private var timeout: Scheduled<Void>?

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: Self.response))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        context.fireChannelInactive()
    }
}
