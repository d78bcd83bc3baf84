import NIOCore
import OrderedCollections
import SidecastJSON

/// A socket described across nodes: one element of a fetch-sockets answer.
///
/// Node sends `{id, handshake, rooms, data}` with the handshake minus its `sessionStore`.
public struct RedisSocketDetails: Sendable, Hashable {
    public var id: String
    /// The handshake object (`headers`, `time`, `address`, `xdomain`, `secure`, `issued`,
    /// `url`, `query`, `auth`).
    public var handshake: JSONValue
    /// Every room of the socket, its own id included.
    public var rooms: [String]
    /// `socket.data`; `.null` when the sender had none (Node omits an `undefined` member).
    public var data: JSONValue

    public init(id: String, handshake: JSONValue, rooms: [String], data: JSONValue) {
        self.id = id
        self.handshake = handshake
        self.rooms = rooms
        self.data = data
    }

    var json: JSONValue {
        ["id": .string(id), "handshake": handshake, "rooms": RedisWire.roomArray(rooms), "data": data]
    }

    init(_ value: JSONValue) throws(RedisWireError) {
        guard case .object(let members) = value else { throw .malformed("a socket is not an object") }
        self.init(
            id: try RedisWire.string(members, "id"),
            handshake: members["handshake"] ?? [:],
            rooms: try RedisWire.rooms(members["rooms"], "rooms"),
            data: members["data"] ?? .null
        )
    }
}

/// An answer to a `RedisRequest`, published on the response channel.
///
/// Node tells answers apart by the pending request their `requestId` names, and only some
/// carry a `type`; `decode` goes by shape instead (`type` 6, 8 or 9, else a `rooms` or a
/// `sockets` member), so a caller should still check that the kind matches its request.
/// Every answer is JSON except `broadcastAck`, which is msgpack because an acknowledgement
/// may hold binary data.
public enum RedisResponse: Sendable, Hashable {
    /// `{requestId, rooms}`: every room of the answering node.
    case allRooms(requestId: String, rooms: [String])
    /// `{requestId, sockets}`: the answering node's matching sockets.
    case fetchSockets(requestId: String, sockets: [RedisSocketDetails])
    /// `{type: 6, requestId, data}`: the first argument the answering node's handler passed
    /// to its callback; nil when it passed none (JSON leaves `undefined` out).
    case serverSideEmit(requestId: String, data: JSONValue?)
    /// `{type: 8, requestId, clientCount}`: how many sockets the node asked to acknowledge.
    case broadcastClientCount(requestId: String, clientCount: Int)
    /// msgpack `{type: 9, requestId, packet}`: the first argument of one socket's
    /// acknowledgement; nil when the client acknowledged with no argument.
    case broadcastAck(requestId: String, packet: JSONValue?)

    public var requestId: String {
        switch self {
        case .allRooms(let id, _), .fetchSockets(let id, _), .serverSideEmit(let id, _),
            .broadcastClientCount(let id, _), .broadcastAck(let id, _):
            return id
        }
    }

    /// Where a node answering `request` publishes this answer.
    ///
    /// The requester's own channel with `publishOnSpecificResponseChannel`, else the shared
    /// one; Node publishes server-side-emit answers on the shared channel in any case. (An
    /// emitter request has no uid, and Node would write "undefined" into the channel name;
    /// emitter requests never want answers, though.)
    public func channel(answering request: RedisRequest, in channels: RedisChannels, publishOnSpecificResponseChannel: Bool = false) -> String {
        if case .serverSideEmit = self { return channels.response }
        guard publishOnSpecificResponseChannel else { return channels.response }
        return channels.response(uid: request.uid ?? "undefined")
    }

    public func encode() -> ByteBuffer {
        switch self {
        case .allRooms(let requestId, let rooms):
            return RedisWire.json(["requestId": .string(requestId), "rooms": RedisWire.roomArray(rooms)])
        case .fetchSockets(let requestId, let sockets):
            return RedisWire.json(["requestId": .string(requestId), "sockets": .array(sockets.map(\.json))])
        case .serverSideEmit(let requestId, let data):
            var members: OrderedDictionary<String, JSONValue> = [
                "type": .int(RedisRequestType.serverSideEmit.rawValue), "requestId": .string(requestId),
            ]
            if let data { members["data"] = data }
            return RedisWire.json(.object(members))
        case .broadcastClientCount(let requestId, let clientCount):
            return RedisWire.json([
                "type": .int(RedisRequestType.broadcastClientCount.rawValue),
                "requestId": .string(requestId),
                "clientCount": .int(Int64(clientCount)),
            ])
        case .broadcastAck(let requestId, let packet):
            var members: OrderedDictionary<String, JSONValue> = [
                "type": .int(RedisRequestType.broadcastAck.rawValue), "requestId": .string(requestId),
            ]
            if let packet { members["packet"] = packet }
            return MessagePack.encode(.object(members))
        }
    }

    public static func decode(_ bytes: ByteBuffer) throws(RedisWireError) -> RedisResponse {
        let members = try RedisWire.decodeRequestOrResponse(bytes)
        let requestId = try RedisWire.string(members, "requestId")
        if let typeValue = members["type"] {
            guard let typeNumber = typeValue.intValue else { throw .malformed("\"type\" is not an integer") }
            switch RedisRequestType(rawValue: typeNumber) {
            case .serverSideEmit?:
                return .serverSideEmit(requestId: requestId, data: members["data"])
            case .broadcastClientCount?:
                guard let count = members["clientCount"]?.intValue, let clientCount = Int(exactly: count), clientCount >= 0 else {
                    throw .malformed("\"clientCount\" is not a count")
                }
                return .broadcastClientCount(requestId: requestId, clientCount: clientCount)
            case .broadcastAck?:
                return .broadcastAck(requestId: requestId, packet: members["packet"])
            default:
                throw .unsupportedRequestType(typeNumber)
            }
        }
        if let rooms = members["rooms"] {
            return .allRooms(requestId: requestId, rooms: try RedisWire.rooms(rooms, "rooms"))
        }
        if case .array(let sockets)? = members["sockets"] {
            var details: [RedisSocketDetails] = []
            details.reserveCapacity(sockets.count)
            for socket in sockets { details.append(try RedisSocketDetails(socket)) }
            return .fetchSockets(requestId: requestId, sockets: details)
        }
        throw .malformed("an answer with neither \"type\", \"rooms\" nor \"sockets\"")
    }
}
