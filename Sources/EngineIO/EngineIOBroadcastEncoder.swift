import NIOCore

/// Encodes the WebSocket frames of messages bound for many sessions once. Each WebSocket
/// recipient then writes the one shared buffer past its pipeline's encoder: no frame header of
/// its own, no encoder pass and one iovec instead of two per delivery.
public enum EngineIOBroadcastEncoder {
    /// The same messages, each carrying its encoded frame. Polling sessions ignore the frame.
    public static func prepare(_ messages: [EngineIOMessage]) -> [EngineIOMessage] {
        messages.map { EngineIOMessage(storage: $0.storage, encodedFrame: self.frame($0)) }
    }

    /// One unfragmented, unmasked server frame (RFC 6455 §5.2): FIN and the opcode, the
    /// payload length in 7, 7+16 or 7+64 bits, then the payload. Written here rather than by
    /// NIO's `WebSocketFrameEncoder`, which would need a channel to run in.
    static func frame(_ message: EngineIOMessage) -> ByteBuffer {
        let (opcode, payload) = message.webSocketOpcodeAndPayload
        return self.frame(opcode: opcode, payload: payload, compressed: false)
    }

    /// A frame of `payload`; `compressed` sets RSV1, which marks a permessage-deflate message.
    static func frame(opcode: UInt8, payload: ByteBuffer, compressed: Bool) -> ByteBuffer {
        let length = payload.readableBytes
        var frame = ByteBuffer()
        frame.reserveCapacity(10 + length)
        frame.writeInteger(0x80 | (compressed ? 0x40 : 0) | opcode)
        if length <= 125 {
            frame.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
        frame.writeImmutableBuffer(payload)
        return frame
    }
}

extension EngineIOMessage {
    /// The frame opcode (text or binary) and payload of the message.
    var webSocketOpcodeAndPayload: (opcode: UInt8, payload: ByteBuffer) {
        switch self.storage {
        case .text(let buffer): (0x1, buffer)
        case .binary(let data): (0x2, data)
        }
    }
}
