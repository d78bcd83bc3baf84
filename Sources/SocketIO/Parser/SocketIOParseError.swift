/// Why incoming Socket.IO data was refused. The server closes the connection on any of them,
/// as the reference server does on a parser error.
public struct SocketIOParseError: Error, Hashable, CustomStringConvertible {
    private enum Reason: Hashable {
        case unknownPacketType
        case invalidAttachmentCount
        case tooManyAttachments
        case invalidNamespace
        case invalidAckID
        case invalidJSON
        case invalidPayload
        case invalidPlaceholder
        case unexpectedBinary
        case unexpectedText
        case invalidMessagePack
    }

    private let reason: Reason

    /// The first character is not a packet type digit (0 to 6).
    public static let unknownPacketType = Self(reason: .unknownPacketType)
    /// A binary packet without a positive decimal attachment count followed by "-".
    public static let invalidAttachmentCount = Self(reason: .invalidAttachmentCount)
    /// More attachments announced than the decoder's `maxAttachments`.
    public static let tooManyAttachments = Self(reason: .tooManyAttachments)
    /// The namespace is not valid UTF-8.
    public static let invalidNamespace = Self(reason: .invalidNamespace)
    /// The acknowledgement id does not fit in an `Int`.
    public static let invalidAckID = Self(reason: .invalidAckID)
    /// The payload is not JSON.
    public static let invalidJSON = Self(reason: .invalidJSON)
    /// The payload is JSON but not what the packet type allows (see `SocketIOPacket.data`).
    public static let invalidPayload = Self(reason: .invalidPayload)
    /// A `{"_placeholder":true}` object whose `num` names no received attachment.
    public static let invalidPlaceholder = Self(reason: .invalidPlaceholder)
    /// A binary frame arrived while no binary packet was waiting for attachments.
    public static let unexpectedBinary = Self(reason: .unexpectedBinary)
    /// A text frame arrived while a binary packet was still waiting for attachments.
    public static let unexpectedText = Self(reason: .unexpectedText)
    /// Under `--parser msgpack`: a text message, or bytes that are not one MessagePack value.
    public static let invalidMessagePack = Self(reason: .invalidMessagePack)

    public var description: String {
        switch reason {
        case .unknownPacketType: "unknown packet type"
        case .invalidAttachmentCount: "illegal attachment count"
        case .tooManyAttachments: "too many attachments"
        case .invalidNamespace: "namespace is not valid UTF-8"
        case .invalidAckID: "acknowledgement id out of range"
        case .invalidJSON: "payload is not valid JSON"
        case .invalidPayload: "invalid payload for the packet type"
        case .invalidPlaceholder: "attachment placeholder names no attachment"
        case .unexpectedBinary: "got binary data when not reconstructing a packet"
        case .unexpectedText: "got plaintext data when reconstructing a packet"
        case .invalidMessagePack: "not a MessagePack packet"
        }
    }
}
