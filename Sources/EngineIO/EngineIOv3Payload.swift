import ExtrasBase64
import NIOCore

/// The Engine.IO protocol revision of a session, from the `EIO` query parameter of its
/// handshake.
public enum EngineIOProtocolVersion: Sendable, Hashable {
    /// Engine.IO v4 (Socket.IO v3 and later clients).
    case v4
    /// Engine.IO v3 (Socket.IO 2.x clients, python-engineio 3.x), accepted with `allowEIO3`.
    /// `supportsBinary` is false when the handshake asked for `b64`: binary then goes out as
    /// base64 in text payloads, never in the XHR2 binary payload.
    case v3(supportsBinary: Bool)

    /// The `EIO` number: 3 or 4.
    public var number: Int {
        switch self {
        case .v4: 4
        case .v3: 3
        }
    }
}

/// The polling payloads and binary WebSocket frames of Engine.IO v3, as engine.io-parser 2.x
/// (vendored by the Node server as `lib/parser-v3/index.ts`) writes and reads them.
///
/// - Text payload: each packet as `<length>:<packet>`, the length counted in UTF-16 code
///   units (JavaScript's `String.length`), binary packets as `b4<base64>`.
/// - Binary (XHR2) payload, sent when the client supports binary and a packet is binary:
///   per packet a marker byte (0 text, 1 binary), the decimal digits of the length as bytes
///   0–9, 255, then the packet: UTF-8 text, or the type byte (4) followed by the raw bytes.
/// - A binary WebSocket frame is the type byte (4) followed by the raw bytes.
enum EngineIOv3Payload {
    /// Encodes messages as one poll response body; `binary` says whether it is the XHR2
    /// format (content type `application/octet-stream`).
    static func encode(_ messages: some Collection<EngineIOMessage>, supportsBinary: Bool) -> (body: ByteBuffer, binary: Bool) {
        let hasBinary = messages.contains { if case .binary = $0.storage { true } else { false } }
        var body = ByteBuffer()
        if supportsBinary && hasBinary {
            for message in messages {
                switch message.storage {
                case .text(let text):
                    writeBinaryHeader(isBinary: false, length: text.readableBytes, into: &body)
                    body.writeImmutableBuffer(text)
                case .binary(let data):
                    writeBinaryHeader(isBinary: true, length: data.readableBytes + 1, into: &body)
                    body.writeInteger(EngineIOPacketType.message.rawValue - UInt8(ascii: "0"))
                    body.writeImmutableBuffer(data)
                }
            }
            return (body, true)
        }
        if messages.isEmpty {
            body.writeString("0:")
            return (body, false)
        }
        for message in messages {
            switch message.storage {
            case .text(let text):
                body.writeString(String(utf16Length(of: text)))
                body.writeInteger(UInt8(ascii: ":"))
                body.writeImmutableBuffer(text)
            case .binary(let data):
                let encoded = Base64.encodeToBytes(bytes: data.readableBytesView)
                body.writeString(String(2 + encoded.count))
                body.writeString(":b4")
                body.writeBytes(encoded)
            }
        }
        return (body, false)
    }

    private static func writeBinaryHeader(isBinary: Bool, length: Int, into body: inout ByteBuffer) {
        body.writeInteger(UInt8(isBinary ? 1 : 0))
        for digit in String(length).utf8 {
            body.writeInteger(digit - UInt8(ascii: "0"))
        }
        body.writeInteger(UInt8(255))
    }

    /// The length JavaScript gives the UTF-8 text in `buffer`: one per code unit of UTF-16.
    static func utf16Length(of buffer: ByteBuffer) -> Int {
        let view = buffer.readableBytesView
        // Every byte below 0x80 is one unit; the rest is counted through a decoded String.
        if !view.contains(where: { $0 >= 0x80 }) { return view.count }
        return String(buffer: buffer).utf16.count
    }

    /// Decodes a POST body: the XHR2 format when the request's content type was
    /// `application/octet-stream`, else the text format. Like `decodePayload` of the vendored
    /// parser, decoding stops at the first malformed packet (or length); the packets before it
    /// are still returned.
    static func decode(_ body: ByteBuffer, binary: Bool) -> (packets: [EngineIOPacket], malformed: Bool) {
        binary ? decodeBinary(body) : decodeText(body)
    }

    private static func decodeText(_ body: ByteBuffer) -> (packets: [EngineIOPacket], malformed: Bool) {
        // The JS parser walks UTF-16 code units; so does this, over the body decoded as UTF-8.
        let units = Array(String(buffer: body).utf16)
        guard !units.isEmpty else { return ([], true) }
        var packets: [EngineIOPacket] = []
        var index = 0
        while index < units.count {
            guard let colon = units[index...].firstIndex(of: UInt16(UInt8(ascii: ":"))),
                  colon > index, colon - index <= 10,
                  units[index..<colon].allSatisfy({ $0 >= UInt16(UInt8(ascii: "0")) && $0 <= UInt16(UInt8(ascii: "9")) }),
                  let length = Int(String(decoding: units[index..<colon], as: UTF16.self)),
                  length <= units.count - colon - 1
            else { return (packets, true) }
            let start = colon + 1
            if length > 0 {
                let text = String(decoding: units[start..<start + length], as: UTF16.self)
                guard let packet = EngineIOPacket(v3Text: ByteBuffer(string: text)) else { return (packets, true) }
                packets.append(packet)
            }
            index = start + length
        }
        return (packets, false)
    }

    private static func decodeBinary(_ body: ByteBuffer) -> (packets: [EngineIOPacket], malformed: Bool) {
        var buffer = body
        var packets: [EngineIOPacket] = []
        guard buffer.readableBytes > 0 else { return ([], true) }
        while let marker = buffer.readInteger(as: UInt8.self) {
            guard marker <= 1 else { return (packets, true) }
            var length = 0
            var digits = 0
            while true {
                guard let digit = buffer.readInteger(as: UInt8.self) else { return (packets, true) }
                if digit == 255 { break }
                guard digit <= 9, digits < 10 else { return (packets, true) }
                length = length * 10 + Int(digit)
                digits += 1
            }
            guard digits > 0, var packetBytes = buffer.readSlice(length: length) else { return (packets, true) }
            let packet: EngineIOPacket?
            if marker == 0 {
                packet = EngineIOPacket(v3Text: packetBytes)
            } else {
                packet = packetBytes.readInteger(as: UInt8.self) == EngineIOPacketType.message.rawValue - UInt8(ascii: "0")
                    ? .binary(packetBytes) : nil
            }
            guard let packet else { return (packets, true) }
            packets.append(packet)
        }
        return (packets, false)
    }

    /// A binary WebSocket frame of a v3 client: the type byte, then the message. Only binary
    /// messages are meaningful; any other type is a malformed packet.
    static func decodeBinaryFrame(_ frame: ByteBuffer) -> EngineIOPacket? {
        var data = frame
        guard data.readInteger(as: UInt8.self) == EngineIOPacketType.message.rawValue - UInt8(ascii: "0") else { return nil }
        return .binary(data)
    }

    /// The payload of a binary WebSocket frame for a v3 client: the type byte before the data.
    static func binaryFrame(_ data: ByteBuffer) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.reserveCapacity(1 + data.readableBytes)
        frame.writeInteger(EngineIOPacketType.message.rawValue - UInt8(ascii: "0"))
        frame.writeImmutableBuffer(data)
        return frame
    }
}

extension EngineIOPacket {
    /// One packet in v3 text form. As in v4, except that a base64 binary packet carries its
    /// type after the "b" ("b4…").
    init?(v3Text text: ByteBuffer) {
        var buffer = text
        if buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == UInt8(ascii: "b") {
            buffer.moveReaderIndex(forwardBy: 1)
            guard buffer.readInteger(as: UInt8.self) == EngineIOPacketType.message.rawValue,
                  let data = Self.decodeBase64(buffer.readableBytesView)
            else { return nil }
            self = .binary(data)
            return
        }
        self.init(text: buffer)
    }
}
