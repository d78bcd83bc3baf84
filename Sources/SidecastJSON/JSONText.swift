import NIOCore

/// Compact JSON text, printed by jansson exactly as `JSONValue.write(to:)` prints, so it can be
/// copied into a message as it is.
///
/// The bridge prints an emit's arguments once from the line's parsed tree and every client
/// gets these bytes; code that needs the value parses the text again (`value`).
public struct JSONText: Sendable, Hashable {
    /// The text, without a trailing newline.
    public let bytes: ByteBuffer

    /// Prints `value`; `.binary` prints as `{"$binary":"<base64>"}` and reads back as that object.
    public init(_ value: JSONValue) {
        var bytes = ByteBuffer()
        value.write(to: &bytes)
        self.bytes = bytes
    }

    init(printed bytes: ByteBuffer) {
        self.bytes = bytes
    }

    /// The value the text spells (objects stay objects, even `{"$binary":…}`).
    public var value: JSONValue {
        do {
            return try JSONValue(parsing: bytes)
        } catch {
            preconditionFailure("JSONText holds text jansson printed, which parses: \(error)")
        }
    }

    /// Whether the text is `null`, which Socket.IO leaves out of a packet.
    public var isNull: Bool {
        bytes.readableBytesView.elementsEqual("null".utf8)
    }
}
