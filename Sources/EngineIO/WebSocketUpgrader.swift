import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Upgrades an Engine.IO request to WebSocket: NIO's upgrader validates the request and
/// builds the 101 response, but the pipeline after it is the transport handler alone, which
/// reads and writes frames itself. NIO's frame encoder and decoder handlers would cost each
/// connection about 900 bytes (handlers, their buffers and pipeline contexts).
final class WebSocketUpgrader: HTTPServerProtocolUpgrader {
    private let handshake: NIOWebSocketServerUpgrader
    private let upgradePipeline: (Channel, HTTPRequestHead) throws -> Void

    /// - Parameters:
    ///   - shouldUpgrade: the headers to add to the 101 response, nil to refuse the upgrade.
    ///   - upgradePipeline: sets up the upgraded channel, synchronously on its loop.
    init(
        maxFrameSize: Int,
        shouldUpgrade: @escaping @Sendable (Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>,
        upgradePipeline: @escaping (Channel, HTTPRequestHead) throws -> Void
    ) {
        self.handshake = NIOWebSocketServerUpgrader(
            maxFrameSize: maxFrameSize,
            automaticErrorHandling: false,
            shouldUpgrade: shouldUpgrade,
            upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededVoidFuture() }
        )
        self.upgradePipeline = upgradePipeline
    }

    var supportedProtocol: String { self.handshake.supportedProtocol }

    var requiredUpgradeHeaders: [String] { self.handshake.requiredUpgradeHeaders }

    func buildUpgradeResponse(
        channel: Channel,
        upgradeRequest: HTTPRequestHead,
        initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        self.handshake.buildUpgradeResponse(
            channel: channel,
            upgradeRequest: upgradeRequest,
            initialResponseHeaders: initialResponseHeaders
        )
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        context.eventLoop.makeCompletedFuture {
            try self.upgradePipeline(context.channel, upgradeRequest)
        }
    }
}
