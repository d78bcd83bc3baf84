import NIOCore
import SidecastJSON

/// An event a client emitted: its name, its ack id, and its arguments.
///
/// The arguments of a plain EVENT stay in the parsed tree they arrived in: the bridge prints
/// them straight into its line to the backend (`writeArguments`), with no `JSONValue` tree in
/// between. Arguments of a binary event, reassembled from attachments, are values.
public struct SocketIOEvent {
    /// The event name; a numeric name as the client sent it, printed (`1` → "1").
    public let name: String
    /// The id of the acknowledgement the client waits for, if it asked for one.
    public let ackID: Int?
    private let arguments: Arguments

    private enum Arguments {
        case values([JSONValue])
        /// The whole EVENT data `[name, ...args]`.
        case parsed(JSONDocument)
    }

    public init(name: String, args: [JSONValue], ackID: Int? = nil) {
        self.name = name
        self.ackID = ackID
        self.arguments = .values(args)
    }

    init(name: String, data: JSONDocument, ackID: Int?) {
        self.name = name
        self.ackID = ackID
        self.arguments = .parsed(data)
    }

    /// The arguments as values, converted when asked for.
    public var args: [JSONValue] {
        switch arguments {
        case .values(let args): args
        case .parsed(let data): data.elements(droppingFirst: 1)
        }
    }

    /// Appends the arguments as one JSON array, exactly as `JSONValue.array(args).write(to:)`
    /// prints them (binary values as `{"$binary":…}`).
    public func writeArguments(to buffer: inout ByteBuffer) {
        switch arguments {
        case .values(let args): JSONValue.array(args).write(to: &buffer)
        case .parsed(let data): data.writeArray(droppingFirst: 1, to: &buffer)
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
