import NIOCore
import SidecastJSON

/// Turns the Engine.IO messages of one connection back into packets, following
/// socket.io-parser's `Decoder`.
///
/// Text is `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`. A binary packet
/// is announced in text and completed by the binary messages that follow it; reassembling it
/// is the decoder's only state.
public struct SocketIOPacketDecoder: Sendable {
    private enum State: Sendable {
        case idle
        case awaitingAttachments(SocketIOPacket, expected: Int, received: [ByteBuffer])
    }

    static let reservedEventNames: Set<String> = [
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    ]

    /// The most attachments one packet may announce; guards memory against absurd counts.
    public let maxAttachments: Int
    private var state: State = .idle

    public init(maxAttachments: Int = 10) {
        self.maxAttachments = maxAttachments
    }

    /// A text message decoded: a packet, or a plain EVENT whose data stays in jansson's tree.
    enum Decoded {
        case packet(SocketIOPacket)
        /// An EVENT without attachments. Its data is a checked array `[name, ...args]`, kept
        /// parsed so that the layer above can read it without converting it all, and the text
        /// of its name and arguments as the client sent them, when that can be passed on.
        case event(namespace: String, id: Int?, data: JSONDocument, text: SocketIOEvent.Text?)
    }

    /// Decodes the payload of a text Engine.IO message (without its "4" prefix). Returns nil
    /// when the packet is binary and waits for its attachments.
    public mutating func decode(text: some StringProtocol) throws(SocketIOParseError) -> SocketIOPacket? {
        let parsed = text.utf8.withContiguousStorageIfAvailable { [maxAttachments] in
            Self.parse(UnsafeRawBufferPointer($0), maxAttachments: maxAttachments)
        }
        if let parsed {
            return try accept(parsed).map(Self.packet)
        }
        return try accept(Array(text.utf8).withUnsafeBytes { [maxAttachments] in Self.parse($0, maxAttachments: maxAttachments) })
            .map(Self.packet)
    }

    /// Decodes the UTF-8 payload of a text Engine.IO message held in a buffer, as a WebSocket
    /// text frame delivers it, without copying it into a `String` first.
    public mutating func decode(text: ByteBuffer) throws(SocketIOParseError) -> SocketIOPacket? {
        try decodeKeepingEventData(text: text).map(Self.packet)
    }

    /// As `decode(text:)`, but a plain EVENT keeps its data as parsed: what the server does
    /// with every event a client emits, which it only passes on.
    mutating func decodeKeepingEventData(text: ByteBuffer) throws(SocketIOParseError) -> Decoded? {
        try accept(text.withUnsafeReadableBytes { [maxAttachments] in Self.parse($0, maxAttachments: maxAttachments, keepingTextOf: text) })
    }

    private static func packet(_ decoded: Decoded) -> SocketIOPacket {
        switch decoded {
        case .packet(let packet):
            return packet
        case .event(let namespace, let id, let data, _):
            do {
                return SocketIOPacket(type: .event, namespace: namespace, id: id, data: try data.value(binaryObjects: .keep))
            } catch {
                preconditionFailure("only decoding $binary objects can fail: \(error)")
            }
        }
    }

    /// Takes the payload of a binary Engine.IO message as the next attachment of the pending
    /// binary packet. Returns the packet once its last attachment has arrived, nil before.
    public mutating func decode(binary: ByteBuffer) throws(SocketIOParseError) -> SocketIOPacket? {
        guard case .awaitingAttachments(var packet, let expected, var received) = state else {
            throw .unexpectedBinary
        }
        // Leave `.idle` in place while mutating so `received` is not copied on append; an
        // error below also leaves the decoder idle.
        state = .idle
        received.append(binary)
        guard received.count == expected else {
            state = .awaitingAttachments(packet, expected: expected, received: received)
            return nil
        }
        packet.data = try packet.data.map { value throws(SocketIOParseError) in
            try Self.replacingPlaceholders(in: value, with: received)
        }
        return packet
    }

    private mutating func accept(_ parsed: Result<(Decoded, attachments: Int), SocketIOParseError>) throws(SocketIOParseError) -> Decoded? {
        guard case .idle = state else { throw .unexpectedText }
        let (decoded, attachments) = try parsed.get()
        guard attachments > 0 else { return decoded }
        state = .awaitingAttachments(Self.packet(decoded), expected: attachments, received: [])
        return nil
    }

    /// Parses one text packet; a binary packet comes back as EVENT / ACK with its
    /// placeholders still in place and the number of attachments to wait for.
    ///
    /// With `source`, the buffer `bytes` are the readable bytes of, a plain EVENT also keeps
    /// slices of it holding the text of its name and arguments (see `SocketIOEvent.Text`).
    private static func parse(
        _ bytes: UnsafeRawBufferPointer, maxAttachments: Int, keepingTextOf source: ByteBuffer? = nil
    ) -> Result<(Decoded, attachments: Int), SocketIOParseError> {
        guard let first = bytes.first, isDigit(first), let type = SocketIOPacketType(rawValue: first - UInt8(ascii: "0")) else {
            return .failure(.unknownPacketType)
        }
        var cursor = 1
        var attachments = 0
        if type == .binaryEvent || type == .binaryAck {
            let start = cursor
            while cursor < bytes.count, isDigit(bytes[cursor]) { cursor += 1 }
            guard cursor > start, cursor < bytes.count, bytes[cursor] == UInt8(ascii: "-") else {
                return .failure(.invalidAttachmentCount)
            }
            // More digits than an Int holds is certainly more than `maxAttachments`.
            guard cursor - start <= 18 else { return .failure(.tooManyAttachments) }
            attachments = decimalValue(bytes[start..<cursor])
            guard attachments >= 1 else { return .failure(.invalidAttachmentCount) }
            guard attachments <= maxAttachments else { return .failure(.tooManyAttachments) }
            cursor += 1
        }

        var packet = SocketIOPacket(type: type == .binaryEvent ? .event : type == .binaryAck ? .ack : type)
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "/") {
            let start = cursor
            while cursor < bytes.count, bytes[cursor] != UInt8(ascii: ",") { cursor += 1 }
            guard let namespace = String(validating: bytes[start..<cursor], as: UTF8.self) else {
                return .failure(.invalidNamespace)
            }
            packet.namespace = namespace
            if cursor < bytes.count { cursor += 1 }
        }

        if cursor < bytes.count, isDigit(bytes[cursor]) {
            let start = cursor
            while cursor < bytes.count, isDigit(bytes[cursor]) { cursor += 1 }
            guard cursor - start <= 18 else { return .failure(.invalidAckID) }
            packet.id = decimalValue(bytes[start..<cursor])
        }

        guard cursor < bytes.count else { return .success((.packet(packet), attachments)) }
        let document: JSONDocument
        do {
            document = try JSONDocument(parsing: UnsafeRawBufferPointer(rebasing: bytes[cursor...]))
        } catch {
            return .failure(.invalidJSON)
        }
        if type == .event {
            guard isEventDataValid(document) else { return .failure(.invalidPayload) }
            let text = source.flatMap { source in
                JSONArrayText(array: UnsafeRawBufferPointer(rebasing: bytes[cursor...])).map { spans in
                    SocketIOEvent.Text(
                        name: source.getSlice(at: source.readerIndex + cursor + spans.first.lowerBound, length: spans.first.count)!,
                        arguments: source.getSlice(at: source.readerIndex + cursor + spans.rest.lowerBound, length: spans.rest.count)!
                    )
                }
            }
            return .success((.event(namespace: packet.namespace, id: packet.id, data: document, text: text), 0))
        }
        let payload: JSONValue
        do {
            payload = try document.value(binaryObjects: .keep)
        } catch {
            preconditionFailure("only decoding $binary objects can fail: \(error)")
        }
        guard isPayloadValid(payload, for: type) else { return .failure(.invalidPayload) }
        packet.data = payload
        return .success((.packet(packet), attachments))
    }

    /// `isPayloadValid` for an EVENT, read on the parsed tree: an array whose first element
    /// is a number or a name that is not reserved.
    private static func isEventDataValid(_ document: JSONDocument) -> Bool {
        guard let count = document.arrayCount, count > 0 else { return false }
        return isEventName(document.element(0))
    }

    private static func isEventName(_ first: JSONValue?) -> Bool {
        switch first {
        case .int?, .double?: true
        case .string(let name)?: !reservedEventNames.contains(name)
        default: false
        }
    }

    /// socket.io-parser's `isPayloadValid`, for a payload that is present.
    private static func isPayloadValid(_ payload: JSONValue, for type: SocketIOPacketType) -> Bool {
        switch (type, payload) {
        case (.connect, .object):
            return true
        case (.connectError, .string), (.connectError, .object):
            return true
        case (.event, .array(let elements)), (.binaryEvent, .array(let elements)):
            return isEventName(elements.first)
        case (.ack, .array), (.binaryAck, .array):
            return true
        default:
            return false
        }
    }

    /// Puts attachment N where `{"_placeholder":true,"num":N}` stands, anywhere in `value`.
    private static func replacingPlaceholders(in value: JSONValue, with attachments: [ByteBuffer]) throws(SocketIOParseError) -> JSONValue {
        switch value {
        case .array(var elements):
            for index in elements.indices {
                elements[index] = try replacingPlaceholders(in: elements[index], with: attachments)
            }
            return .array(elements)
        case .object(var members):
            if members["_placeholder"] == .bool(true) {
                guard let num = members["num"]?.intValue, num >= 0, num < attachments.count else {
                    throw .invalidPlaceholder
                }
                return .binary(attachments[Int(num)])
            }
            for index in members.values.indices {
                members.values[index] = try replacingPlaceholders(in: members.values[index], with: attachments)
            }
            return .object(members)
        default:
            return value
        }
    }
}

private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

/// The value of at most 18 ASCII digits (so it cannot overflow).
private func decimalValue(_ digits: Slice<UnsafeRawBufferPointer>) -> Int {
    digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
}
