import ExtrasBase64
import NIOCore

/// Engine.IO packet types; the raw value is the ASCII digit that starts a packet in text form.
enum EngineIOPacketType: UInt8 {
    case open = 0x30  // "0"
    case close  // "1"
    case ping  // "2"
    case pong  // "3"
    case message  // "4"
    case upgrade  // "5"
    case noop  // "6"
}

/// One packet received from a client, decoded like engine.io-parser's `decodePacket`.
enum EngineIOPacket: Equatable, Sendable {
    case open
    case close
    /// A ping; only the upgrade probe ("2probe") is valid from a v4 client.
    case ping(ByteBuffer)
    case pong(ByteBuffer)
    /// A text message; the buffer holds the payload after the "4".
    case text(ByteBuffer)
    /// A binary message: a WebSocket binary frame, or "b"+base64 in a polling payload.
    case binary(ByteBuffer)
    case upgrade
    case noop

    /// The byte separating packets in a polling payload (ASCII record separator).
    static let recordSeparator: UInt8 = 0x1E
    private static let binaryMarker = UInt8(ascii: "b")

    /// Decodes one packet in text form: a WebSocket text frame or one record of a polling
    /// payload. Returns nil where engine.io-parser yields its "error" packet (empty input, an
    /// unknown type, or invalid base64), which closes the session with "parse error".
    init?(text: ByteBuffer) {
        var buffer = text
        guard let first = buffer.readInteger(as: UInt8.self) else { return nil }
        if first == Self.binaryMarker {
            guard let data = Self.decodeBase64(buffer.readableBytesView) else { return nil }
            self = .binary(data)
            return
        }
        switch EngineIOPacketType(rawValue: first) {
        case .open: self = .open
        case .close: self = .close
        case .ping: self = .ping(buffer)
        case .pong: self = .pong(buffer)
        case .message: self = .text(buffer)
        case .upgrade: self = .upgrade
        case .noop: self = .noop
        case nil: return nil
        }
    }

    /// Splits a polling POST body on the record separator and decodes each record. Like
    /// engine.io-parser's `decodePayload`, decoding stops at the first malformed record; the
    /// packets before it are still returned (and handled) before the session is closed.
    static func decodePayload(_ body: ByteBuffer) -> (packets: [EngineIOPacket], malformed: Bool) {
        var packets: [EngineIOPacket] = []
        let view = body.readableBytesView
        var start = view.startIndex
        while true {
            let end = view[start...].firstIndex(of: recordSeparator) ?? view.endIndex
            let record = body.getSlice(at: start, length: end - start)!
            guard let packet = EngineIOPacket(text: record) else { return (packets, true) }
            packets.append(packet)
            if end == view.endIndex { return (packets, false) }
            start = end + 1
        }
    }

    /// Whether a ping/pong payload is the upgrade probe.
    static func isProbe(_ payload: ByteBuffer) -> Bool {
        payload.readableBytesView.elementsEqual("probe".utf8)
    }

    /// Binary over polling: standard base64 as the JS client sends it, also accepted without
    /// padding or in the URL-safe alphabet, as Node's `Buffer.from(text, "base64")` accepts it.
    static func decodeBase64(_ text: ByteBufferView) -> ByteBuffer? {
        // Padding only ever ends the text; the lenient attempts below must not read past it.
        if let padding = text.firstIndex(of: UInt8(ascii: "=")), text[padding...].contains(where: { $0 != UInt8(ascii: "=") }) {
            return nil
        }
        let attempts: [Base64.DecodingOptions] = [[], [.omitPaddingCharacter], [.base64UrlAlphabet], [.base64UrlAlphabet, .omitPaddingCharacter]]
        for options in attempts {
            if let bytes = try? Base64.decode(bytes: text, options: options) { return ByteBuffer(bytes: bytes) }
        }
        return nil
    }
}
