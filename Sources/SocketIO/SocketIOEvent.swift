import NIOCore
import SidecastJSON

/// An event a client emitted: its name, its ack id, and its arguments.
///
/// The arguments of a plain EVENT stay in the parsed tree they arrived in, and usually in the
/// text the client sent: the bridge copies that text into its line to the backend
/// (`writeName`, `writeArguments`), or else prints the tree, with no `JSONValue` tree in
/// between. Arguments of a binary event, reassembled from attachments, are values.
public struct SocketIOEvent {
    /// The text of a plain EVENT's name and arguments as the client sent it, slices of the
    /// message it came in. jansson parsed the whole data array, so both are valid JSON; a line
    /// break between tokens, which an NDJSON line cannot hold, leaves the event without them.
    public struct Text {
        /// The name, a JSON string with its quotes.
        public var name: ByteBuffer
        /// The arguments between the array's comma and its closing bracket, without brackets.
        public var arguments: ByteBuffer
    }

    /// The event name; a numeric name as the client sent it, printed (`1` → "1").
    public let name: String
    /// The id of the acknowledgement the client waits for, if it asked for one.
    public let ackID: Int?
    private let arguments: Arguments

    private enum Arguments {
        case values([JSONValue])
        /// The whole EVENT data `[name, ...args]`.
        case parsed(JSONDocument, Text?)
    }

    public init(name: String, args: [JSONValue], ackID: Int? = nil) {
        self.name = name
        self.ackID = ackID
        self.arguments = .values(args)
    }

    init(name: String, data: JSONDocument, text: Text?, ackID: Int?) {
        self.name = name
        self.ackID = ackID
        self.arguments = .parsed(data, text)
    }

    /// The arguments as values, converted when asked for.
    public var args: [JSONValue] {
        switch arguments {
        case .values(let args): args
        case .parsed(let data, _): data.elements(droppingFirst: 1)
        }
    }

    /// Appends the name as a JSON string: as the client sent it when the text was kept.
    public func writeName(to buffer: inout ByteBuffer) {
        if case .parsed(_, let text?) = arguments {
            buffer.writeImmutableBuffer(text.name)
        } else {
            JSONValue.string(name).write(to: &buffer)
        }
    }

    /// Appends the arguments as one JSON array: as the client sent them when the text was
    /// kept, else as `JSONValue.array(args).write(to:)` prints them (binary values as
    /// `{"$binary":…}`).
    public func writeArguments(to buffer: inout ByteBuffer) {
        switch arguments {
        case .values(let args):
            JSONValue.array(args).write(to: &buffer)
        case .parsed(_, let text?):
            buffer.writeInteger(UInt8(ascii: "["))
            buffer.writeImmutableBuffer(text.arguments)
            buffer.writeInteger(UInt8(ascii: "]"))
        case .parsed(let data, nil):
            data.writeArray(droppingFirst: 1, to: &buffer)
        }
    }

    /// The event name as the first element of an EVENT's data would be turned into it.
    static func name(of first: JSONValue?) -> String? {
        switch first {
        case .string(let name)?: name
        case .int(let n)?: String(n)
        case .double(let d)?: String(d)
        default: nil
        }
    }
}
