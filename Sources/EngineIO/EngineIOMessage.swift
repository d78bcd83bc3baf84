import ExtrasBase64
import NIOCore

/// An outbound Engine.IO packet, encoded once. Broadcasts hand the same value to every
/// recipient: sessions write its buffer as is (a WebSocket frame or a part of a polling
/// payload), so recipients share the bytes instead of copying or re-encoding them.
public struct EngineIOMessage: Sendable, Hashable {
    enum Storage: Sendable, Hashable {
        /// A packet in text form, type digit included ("4hello", "2", "3probe").
        case text(ByteBuffer)
        /// A binary message: raw bytes, sent as a binary frame or "b"+base64 when polling.
        case binary(ByteBuffer)
    }

    let storage: Storage
    /// The whole WebSocket frame, header included, when `EngineIOBroadcastEncoder.prepare`
    /// encoded it: WebSocket sessions write these bytes as they are, so a broadcast's frame is
    /// encoded once rather than once per recipient.
    let encodedFrame: ByteBuffer?

    init(storage: Storage, encodedFrame: ByteBuffer? = nil) {
        self.storage = storage
        self.encodedFrame = encodedFrame
    }

    /// A "message" packet carrying `payload` (stores "4" + payload).
    public static func text(_ payload: String) -> EngineIOMessage {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(payload.utf8.count + 1)
        buffer.writeInteger(EngineIOPacketType.message.rawValue)
        buffer.writeString(payload)
        return EngineIOMessage(storage: .text(buffer))
    }

    /// A "message" packet whose buffer already starts with the "4" type digit.
    public static func text(encoded: ByteBuffer) -> EngineIOMessage {
        precondition(encoded.getInteger(at: encoded.readerIndex, as: UInt8.self) == EngineIOPacketType.message.rawValue,
                     "an encoded Engine.IO message starts with \"4\"")
        return EngineIOMessage(storage: .text(encoded))
    }

    /// A binary "message" packet.
    public static func binary(_ data: ByteBuffer) -> EngineIOMessage {
        EngineIOMessage(storage: .binary(data))
    }

    /// A control packet in text form: type digit plus an optional payload.
    static func packet(_ type: EngineIOPacketType, _ payload: String = "") -> EngineIOMessage {
        var buffer = ByteBuffer()
        buffer.writeInteger(type.rawValue)
        buffer.writeString(payload)
        return EngineIOMessage(storage: .text(buffer))
    }

    /// Every session gets one each ping interval: its WebSocket frame is encoded once.
    static let ping = EngineIOBroadcastEncoder.prepare([packet(.ping)])[0]
    static let probePong = packet(.pong, "probe")
    /// The answer to an Engine.IO v3 client's ping.
    static let pong = packet(.pong)
    static let noop = packet(.noop)
    static let close = packet(.close)

    /// The packet's size without transport framing: its text form with the type digit, or its
    /// raw binary bytes.
    public var byteCount: Int {
        switch self.storage {
        case .text(let buffer): buffer.readableBytes
        case .binary(let data): data.readableBytes
        }
    }

    /// The bytes this packet takes in a polling payload, separator excluded.
    var pollingLength: Int {
        switch self.storage {
        case .text(let buffer): buffer.readableBytes
        case .binary(let data): 1 + Base64.encodedLength(bytesCount: data.readableBytes)
        }
    }

    /// Encodes messages as one polling payload, record-separated, binary as "b"+base64. Text
    /// buffers are returned as they are, so a broadcast buffer goes out uncopied.
    static func pollingPayload(_ messages: some Collection<EngineIOMessage>) -> (parts: [ByteBuffer], length: Int) {
        var parts: [ByteBuffer] = []
        parts.reserveCapacity(messages.count * 2)
        var length = 0
        for message in messages {
            if !parts.isEmpty {
                parts.append(recordSeparatorBuffer)
                length += 1
            }
            switch message.storage {
            case .text(let buffer):
                parts.append(buffer)
                length += buffer.readableBytes
            case .binary(let data):
                var encoded = ByteBuffer()
                encoded.reserveCapacity(1 + Base64.encodedLength(bytesCount: data.readableBytes))
                encoded.writeInteger(UInt8(ascii: "b"))
                encoded.writeBytes(Base64.encodeToBytes(bytes: data.readableBytesView))
                parts.append(encoded)
                length += encoded.readableBytes
            }
        }
        return (parts, length)
    }

    private static let recordSeparatorBuffer = ByteBuffer(bytes: [EngineIOPacket.recordSeparator])
}
