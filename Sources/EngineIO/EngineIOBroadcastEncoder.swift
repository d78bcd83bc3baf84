import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket

/// Encodes the WebSocket frames of messages bound for many sessions once, with NIO's own
/// `WebSocketFrameEncoder` in a channel of its own. Each WebSocket recipient then writes the
/// one shared buffer past its pipeline's encoder: no frame header of its own, no encoder pass
/// and one iovec instead of two per delivery. Confined to one event loop, like the server.
public final class EngineIOBroadcastEncoder {
    private let logger: Logger
    private lazy var channel = EmbeddedChannel(handler: WebSocketFrameEncoder())

    public init(logger: Logger) {
        self.logger = logger
    }

    /// The same messages, each carrying its encoded frame. Polling sessions ignore the frame.
    public func prepare(_ messages: [EngineIOMessage]) -> [EngineIOMessage] {
        messages.map { message in
            guard let frame = self.encodeFrame(message) else { return message }
            return EngineIOMessage(storage: message.storage, encodedFrame: frame)
        }
    }

    /// The encoder writes the header and the payload as separate buffers; they are joined.
    private func encodeFrame(_ message: EngineIOMessage) -> ByteBuffer? {
        var parts: [ByteBuffer] = []
        do {
            try self.channel.writeOutbound(message.webSocketFrame)
            while let part = try self.channel.readOutbound(as: ByteBuffer.self) {
                parts.append(part)
            }
        } catch {
            // Recipients encode the frame themselves then, as for a single send.
            self.logger.error("cannot encode a broadcast frame", metadata: ["error": "\(error)"])
            return nil
        }
        var frame = ByteBuffer()
        frame.reserveCapacity(parts.reduce(0) { $0 + $1.readableBytes })
        for var part in parts { frame.writeBuffer(&part) }
        return frame
    }
}
