import NIOCore
import OrderedCollections
import SidecastJSON
import SocketIO

/// The `type` numbers of socket.io-adapter's `ClusterAdapter` messages (its `MessageType`).
public enum ClusterMessageType: Int64, Sendable, Hashable {
    case initialHeartbeat = 1
    case heartbeat = 2
    case broadcast = 3
    case socketsJoin = 4
    case socketsLeave = 5
    case disconnectSockets = 6
    case fetchSockets = 7
    case fetchSocketsResponse = 8
    case serverSideEmit = 9
    case serverSideEmitResponse = 10
    case broadcastClientCount = 11
    case broadcastAck = 12
    case adapterClose = 13
}

/// The `opts` of a cluster message: `{rooms, except, flags}`.
public struct ClusterOptions: Sendable, Hashable {
    public var rooms: [String]
    public var except: [String]
    public var flags: RedisBroadcastFlags

    public init(rooms: [String] = [], except: [String] = [], flags: RedisBroadcastFlags = .init()) {
        self.rooms = rooms
        self.except = except
        self.flags = flags
    }

    var json: JSONValue {
        ["rooms": RedisWire.roomArray(rooms), "except": RedisWire.roomArray(except), "flags": .object(flags.members)]
    }

    init(_ value: JSONValue?) throws(RedisWireError) {
        guard case .object(let members)? = value else { throw .malformed("\"opts\" is not an object") }
        self.init(
            rooms: try RedisWire.rooms(members["rooms"], "rooms"),
            except: try RedisWire.rooms(members["except"], "except"),
            flags: try RedisBroadcastFlags(members["flags"])
        )
    }
}

/// One message of socket.io-adapter's `ClusterAdapter`, as the sharded Redis adapter
/// (`createShardedAdapter`) publishes it: `{type, data, uid, nsp}` (Node sets `uid` and `nsp`
/// after building `{type, data}`, so they come last), `data` left out for heartbeats and
/// `ADAPTER_CLOSE`.
///
/// The encoding is JSON, except that a message of a kind that may carry binary and does carry
/// some is msgpack as notepack writes it, with binary as `bin`. A message is read as JSON when
/// its first byte is `{`, else as msgpack, as Node does.
public struct ClusterMessage: Sendable, Hashable {
    public enum Body: Sendable, Hashable {
        case initialHeartbeat
        case heartbeat
        case adapterClose
        /// `{packet, opts}`, or `{packet, requestId, opts}` when the sender waits for acks.
        case broadcast(packet: SocketIOPacket, options: ClusterOptions, requestId: String?)
        case socketsJoin(options: ClusterOptions, rooms: [String])
        case socketsLeave(options: ClusterOptions, rooms: [String])
        case disconnectSockets(options: ClusterOptions, close: Bool)
        case fetchSockets(options: ClusterOptions, requestId: String)
        case fetchSocketsResponse(requestId: String, sockets: [RedisSocketDetails])
        /// `packet` is the event name then its arguments.
        case serverSideEmit(requestId: String?, packet: [JSONValue])
        /// The answer's first argument; nil when the handler answered without one.
        case serverSideEmitResponse(requestId: String, packet: JSONValue?)
        case broadcastClientCount(requestId: String, clientCount: Int)
        case broadcastAck(requestId: String, packet: JSONValue?)
    }

    /// The sending node; a node ignores its own messages.
    public var uid: String
    public var namespace: String
    public var body: Body

    public init(uid: String, namespace: String, body: Body) {
        self.uid = uid
        self.namespace = namespace
        self.body = body
    }

    public var type: ClusterMessageType {
        switch body {
        case .initialHeartbeat: return .initialHeartbeat
        case .heartbeat: return .heartbeat
        case .adapterClose: return .adapterClose
        case .broadcast: return .broadcast
        case .socketsJoin: return .socketsJoin
        case .socketsLeave: return .socketsLeave
        case .disconnectSockets: return .disconnectSockets
        case .fetchSockets: return .fetchSockets
        case .fetchSocketsResponse: return .fetchSocketsResponse
        case .serverSideEmit: return .serverSideEmit
        case .serverSideEmitResponse: return .serverSideEmitResponse
        case .broadcastClientCount: return .broadcastClientCount
        case .broadcastAck: return .broadcastAck
        }
    }

    /// The id a response answers, or a request's id when it waits for answers.
    public var requestId: String? {
        switch body {
        case .initialHeartbeat, .heartbeat, .adapterClose, .socketsJoin, .socketsLeave, .disconnectSockets:
            return nil
        case .broadcast(_, _, let id), .serverSideEmit(let id, _):
            return id
        case .fetchSockets(_, let id), .fetchSocketsResponse(let id, _), .serverSideEmitResponse(let id, _),
            .broadcastClientCount(let id, _), .broadcastAck(let id, _):
            return id
        }
    }

    /// Whether this is an answer to a request (Node's `ClusterResponse`).
    public var isResponse: Bool {
        switch type {
        case .fetchSocketsResponse, .serverSideEmitResponse, .broadcastClientCount, .broadcastAck: return true
        default: return false
        }
    }

    /// `data` as Node builds it, members in Node's order; nil for messages without data.
    var data: JSONValue? {
        var members: OrderedDictionary<String, JSONValue> = [:]
        switch body {
        case .initialHeartbeat, .heartbeat, .adapterClose:
            return nil
        case .broadcast(let packet, let options, let requestId):
            members["packet"] = packet.redisJSON
            if let requestId { members["requestId"] = .string(requestId) }
            members["opts"] = options.json
        case .socketsJoin(let options, let rooms), .socketsLeave(let options, let rooms):
            members["opts"] = options.json
            members["rooms"] = RedisWire.roomArray(rooms)
        case .disconnectSockets(let options, let close):
            members["opts"] = options.json
            members["close"] = .bool(close)
        case .fetchSockets(let options, let requestId):
            members["opts"] = options.json
            members["requestId"] = .string(requestId)
        case .fetchSocketsResponse(let requestId, let sockets):
            members["requestId"] = .string(requestId)
            members["sockets"] = .array(sockets.map(\.json))
        case .serverSideEmit(let requestId, let packet):
            if let requestId { members["requestId"] = .string(requestId) }
            members["packet"] = .array(packet)
        case .serverSideEmitResponse(let requestId, let packet), .broadcastAck(let requestId, let packet):
            members["requestId"] = .string(requestId)
            if let packet { members["packet"] = packet }
        case .broadcastClientCount(let requestId, let clientCount):
            members["requestId"] = .string(requestId)
            members["clientCount"] = .int(Int64(clientCount))
        }
        return .object(members)
    }

    public func encode() -> ByteBuffer {
        var members: OrderedDictionary<String, JSONValue> = ["type": .int(type.rawValue)]
        let data = self.data
        if let data { members["data"] = data }
        members["uid"] = .string(uid)
        members["nsp"] = .string(namespace)
        if let data, mayContainBinary, data.containsBinary {
            return MessagePack.encode(.object(members))
        }
        return RedisWire.json(.object(members))
    }

    /// The kinds Node checks for binary before choosing msgpack over JSON.
    var mayContainBinary: Bool {
        switch type {
        case .broadcast, .broadcastAck, .fetchSocketsResponse, .serverSideEmit, .serverSideEmitResponse: return true
        default: return false
        }
    }

    public static func decode(_ bytes: ByteBuffer) throws(RedisWireError) -> ClusterMessage {
        let members = try RedisWire.decodeRequestOrResponse(bytes)
        let typeNumber = try RedisWire.integer(members, "type")
        guard let type = ClusterMessageType(rawValue: typeNumber) else { throw .unsupportedRequestType(typeNumber) }
        let uid = try RedisWire.string(members, "uid")
        let namespace = try RedisWire.optionalString(members, "nsp") ?? "/"
        let data: OrderedDictionary<String, JSONValue>
        switch members["data"] {
        case .object(let object)?: data = object
        case nil, .null?: data = [:]
        default: throw .malformed("\"data\" is not an object")
        }
        return ClusterMessage(uid: uid, namespace: namespace, body: try body(type, data: data))
    }

    /// The body of a message of `type` from its `data` members (empty for messages without).
    static func body(_ type: ClusterMessageType, data: OrderedDictionary<String, JSONValue>) throws(RedisWireError) -> Body {
        let body: Body
        switch type {
        case .initialHeartbeat: body = .initialHeartbeat
        case .heartbeat: body = .heartbeat
        case .adapterClose: body = .adapterClose
        case .broadcast:
            guard let packet = data["packet"] else { throw .malformed("\"packet\" is missing") }
            body = .broadcast(
                packet: try SocketIOPacket(redisJSON: packet),
                options: try ClusterOptions(data["opts"]),
                requestId: try RedisWire.optionalString(data, "requestId")
            )
        case .socketsJoin, .socketsLeave:
            let options = try ClusterOptions(data["opts"])
            let rooms = try RedisWire.rooms(data["rooms"], "rooms")
            body = type == .socketsJoin ? .socketsJoin(options: options, rooms: rooms) : .socketsLeave(options: options, rooms: rooms)
        case .disconnectSockets:
            body = .disconnectSockets(options: try ClusterOptions(data["opts"]), close: data["close"]?.boolValue ?? false)
        case .fetchSockets:
            body = .fetchSockets(options: try ClusterOptions(data["opts"]), requestId: try RedisWire.string(data, "requestId"))
        case .fetchSocketsResponse:
            guard case .array(let sockets)? = data["sockets"] else { throw .malformed("\"sockets\" is not an array") }
            var details: [RedisSocketDetails] = []
            details.reserveCapacity(sockets.count)
            for socket in sockets { details.append(try RedisSocketDetails(socket)) }
            body = .fetchSocketsResponse(requestId: try RedisWire.string(data, "requestId"), sockets: details)
        case .serverSideEmit:
            guard case .array(let packet)? = data["packet"], !packet.isEmpty else {
                throw .malformed("\"packet\" is not an event name and arguments")
            }
            body = .serverSideEmit(requestId: try RedisWire.optionalString(data, "requestId"), packet: packet)
        case .serverSideEmitResponse:
            body = .serverSideEmitResponse(requestId: try RedisWire.string(data, "requestId"), packet: data["packet"])
        case .broadcastClientCount:
            guard let count = data["clientCount"]?.intValue, let clientCount = Int(exactly: count), clientCount >= 0 else {
                throw .malformed("\"clientCount\" is not a count")
            }
            body = .broadcastClientCount(requestId: try RedisWire.string(data, "requestId"), clientCount: clientCount)
        case .broadcastAck:
            body = .broadcastAck(requestId: try RedisWire.string(data, "requestId"), packet: data["packet"])
        }
        return body
    }
}

extension JSONValue {
    /// Whether any value inside is binary (Node's `hasBinary`).
    var containsBinary: Bool {
        switch self {
        case .binary: return true
        case .array(let elements): return elements.contains { $0.containsBinary }
        case .object(let members): return members.values.contains { $0.containsBinary }
        default: return false
        }
    }
}
