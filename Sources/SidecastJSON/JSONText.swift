import NIOCore

/// Valid JSON text, copied into messages as it is: printed by jansson exactly as
/// `JSONValue.write(to:)` prints, or taken from text jansson parsed.
///
/// The bridge makes an emit's arguments once from the backend's line, and every client gets
/// these bytes; code that needs the value parses the text again (`value`).
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

    /// The text of a non-empty array with `element` added at its end; jansson prints the
    /// element, and the array's own text is kept byte for byte.
    public func appendingToArray(_ element: JSONValue) -> JSONText {
        let view = bytes.readableBytesView
        precondition(view.first == UInt8(ascii: "[") && view.last == UInt8(ascii: "]"), "JSONText.appendingToArray needs an array")
        var text = bytes
        text.moveWriterIndex(to: text.writerIndex - 1)
        if view.count > 2 { text.writeInteger(UInt8(ascii: ",")) }
        element.write(to: &text)
        text.writeInteger(UInt8(ascii: "]"))
        return JSONText(printed: text)
    }

    /// Whether the text is `null`, which Socket.IO leaves out of a packet.
    public var isNull: Bool {
        bytes.readableBytesView.elementsEqual("null".utf8)
    }
}
