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
    public var data: JSONValue?

    public init(type: SocketIOPacketType, namespace: String = "/", id: Int? = nil, data: JSONValue? = nil) {
        self.type = type
        self.namespace = namespace
        self.id = id
        self.data = data
    }
}
