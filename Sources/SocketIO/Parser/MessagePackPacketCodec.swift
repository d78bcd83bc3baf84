import NIOCore
import OrderedCollections
import SidecastJSON

/// The wire format of socket.io-msgpack-parser (`index.js`): each packet is the object
/// `{type, data, nsp, id}` packed with notepack.io into one binary Engine.IO message. Binary
/// values travel inside it as msgpack `bin`, so there are no attachments and no BINARY_EVENT
/// or BINARY_ACK types; ERROR (4) is CONNECT_ERROR.
///
/// Decoding checks what the parser's `checkPacket` checks, with two differences:
/// - a `nil` DISCONNECT payload counts as absent: python-socketio's `MsgPackPacket` always
///   writes the `data` key, as nil when there is none, which the JavaScript parser would refuse
///   (`decoded.data === undefined`) and so close the client with "parse error";
/// - an EVENT's name is checked as socket.io-parser does (a string that is not a reserved event
///   name, or a number): backends never see an event called "disconnect" from a client.
/// Members other than the four (the JavaScript client sends `options`) are ignored.
///
/// A CONNECT_ERROR goes out as Node's server writes it, with the object
/// `{message, data}`, although the parser's own `checkPacket` only lets a string through
/// for type 4: a JavaScript client on this parser fails to decode a connect error from Node
/// in the same way.
public enum MessagePackPacketCodec {
    /// The packet as one binary Engine.IO message's payload.
    public static func encode(_ packet: SocketIOPacket) -> ByteBuffer {
        var members: OrderedDictionary<String, JSONValue> = [:]
        let type: SocketIOPacketType
        switch packet.type {
        case .binaryEvent: type = .event
        case .binaryAck: type = .ack
        default: type = packet.type
        }
        members["type"] = .int(Int64(type.rawValue))
        // notepack leaves out members whose value is undefined.
        if let data = packet.data {
            members["data"] = data
        }
        members["nsp"] = .string(packet.namespace)
        if let id = packet.id {
            members["id"] = .int(Int64(id))
        }
        return MessagePack.encode(.object(members))
    }

    /// The packet in one binary message, checked like the parser's `checkPacket`.
    public static func decode(_ bytes: ByteBuffer) throws(SocketIOParseError) -> SocketIOPacket {
        let decoded: JSONValue
        do {
            decoded = try MessagePack.decode(bytes)
        } catch {
            throw .invalidMessagePack
        }
        guard let typeNumber = decoded["type"]?.intValue, (0...4).contains(typeNumber),
              let type = SocketIOPacketType(rawValue: UInt8(typeNumber))
        else { throw .unknownPacketType }
        guard case .string(let namespace)? = decoded["nsp"] else { throw .invalidNamespace }
        let data = decoded["data"]
        guard isDataValid(data, for: type) else { throw .invalidPayload }
        var id: Int?
        if let idValue = decoded["id"] {
            guard let number = idValue.intValue, let fitting = Int(exactly: number) else { throw .invalidAckID }
            id = fitting
        }
        // After the parser's own checks, in their order: socket.io-parser's rule for event names.
        if type == .event, !hasValidEventName(data) { throw .invalidPayload }
        let isAbsent = data == nil || ((type == .disconnect || type == .connect) && data?.isNull == true)
        return SocketIOPacket(type: type, namespace: namespace, id: id, data: isAbsent ? nil : data)
    }

    private static func isDataValid(_ data: JSONValue?, for type: SocketIOPacketType) -> Bool {
        switch type {
        case .connect:
            // `typeof data === "object"` holds for null and arrays too; the auth must be an
            // object for the layers above, so an array is refused.
            switch data {
            case nil, .null?, .object?: return true
            default: return false
            }
        case .disconnect:
            return data == nil || data?.isNull == true
        case .connectError:
            if case .string? = data { return true }
            return false
        case .event, .binaryEvent, .ack, .binaryAck:
            if case .array? = data { return true }
            return false
        }
    }

    private static func hasValidEventName(_ data: JSONValue?) -> Bool {
        switch data?.arrayValue?.first {
        case .int?, .double?: return true
        case .string(let name)?: return !SocketIOPacketDecoder.reservedEventNames.contains(name)
        default: return false
        }
    }
}
