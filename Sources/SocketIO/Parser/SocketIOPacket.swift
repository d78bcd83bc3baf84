import SidecastJSON

/// The packet types of the Socket.IO protocol (version 5), with their wire digits.
public enum SocketIOPacketType: UInt8, Sendable, Hashable {
    case connect = 0
    case disconnect = 1
    case event = 2
    case ack = 3
    case connectError = 4
    case binaryEvent = 5
    case binaryAck = 6
}

/// One Socket.IO packet, with any binary attachments already in place as `.binary` values.
///
/// The decoder reports reassembled binary packets as `.event` / `.ack` (as socket.io-parser
/// does), and the encoder chooses `.binaryEvent` / `.binaryAck` by itself when `data` holds
/// binary, so code above the codec only ever deals with the four plain kinds of traffic.
public struct SocketIOPacket: Sendable, Hashable {
    public var type: SocketIOPacketType
    /// Starts with "/"; "/" is the main namespace.
    public var namespace: String
    /// The acknowledgement id of an event that wants an answer, or of the answer.
    public var id: Int?
    /// CONNECT: the `auth` object or nil. EVENT: the event name followed by its arguments.
    /// ACK: the arguments of the acknowledgement. CONNECT_ERROR: an object such as
    /// `{"message": ...}`. DISCONNECT: nil. A received EVENT or ACK carries nil when the
    /// sender sent no payload at all; socket.io-parser lets that through as well.
    ///
    /// A packet made from printed data parses it again here; the encoder copies the text.
    public var data: JSONValue? {
        get {
            switch payload {
            case nil: nil
            case .value(let value): value
            case .printed(let text): text.value
            }
        }
        set { payload = newValue.map(Payload.value) }
    }

    /// The data as text printed beforehand, when the packet was made from it.
    public var printedData: JSONText? {
        if case .printed(let text) = payload { return text }
        return nil
    }

    private var payload: Payload?

    private enum Payload: Sendable {
        case value(JSONValue)
        /// Holds no binary data: such a packet never needs attachments.
        case printed(JSONText)
    }

    public init(type: SocketIOPacketType, namespace: String = "/", id: Int? = nil, data: JSONValue? = nil) {
        self.type = type
        self.namespace = namespace
        self.id = id
        self.payload = data.map(Payload.value)
    }

    /// A packet whose data is already JSON text holding no binary data (an emit's
    /// `[event, ...args]` as the bridge printed it): encoding copies the text, and every
    /// recipient of a broadcast shares the result.
    public init(type: SocketIOPacketType, namespace: String = "/", id: Int? = nil, printedData: JSONText) {
        self.type = type
        self.namespace = namespace
        self.id = id
        self.payload = .printed(printedData)
    }

    /// Packets are equal when they carry the same data, printed or not.
    public static func == (lhs: SocketIOPacket, rhs: SocketIOPacket) -> Bool {
        lhs.type == rhs.type && lhs.namespace == rhs.namespace && lhs.id == rhs.id && lhs.data == rhs.data
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(namespace)
        hasher.combine(id)
        hasher.combine(data)
    }
}
