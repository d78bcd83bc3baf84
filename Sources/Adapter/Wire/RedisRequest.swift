import NIOCore
import OrderedCollections
import SidecastJSON
import SocketIO

/// The `type` numbers of the Node adapter's requests and responses (its `RequestType` enum).
public enum RedisRequestType: Int64, Sendable, Hashable {
    /// `allSockets()` of adapters before 8.0; 8.x still answers it but never sends it.
    case sockets = 0
    case allRooms = 1
    case remoteJoin = 2
    case remoteLeave = 3
    case remoteDisconnect = 4
    case remoteFetch = 5
    case serverSideEmit = 6
    case broadcast = 7
    /// Response only: how many sockets a node asked for an acknowledgement.
    case broadcastClientCount = 8
    /// Response only: one socket's acknowledgement.
    case broadcastAck = 9
}

/// The sockets a request applies to: the `opts` member `{rooms, except}` of requests.
///
/// Empty `rooms` means every socket of the namespace, as for a broadcast.
public struct RedisSelector: Sendable, Hashable {
    public var rooms: [String]
    public var except: [String]

    public init(rooms: [String] = [], except: [String] = []) {
        self.rooms = rooms
        self.except = except
    }

    var json: JSONValue {
        ["rooms": RedisWire.roomArray(rooms), "except": RedisWire.roomArray(except)]
    }

    init(_ value: JSONValue?) throws(RedisWireError) {
        guard case .object(let members)? = value else { throw .malformed("\"opts\" is not an object") }
        self.init(rooms: try RedisWire.rooms(members["rooms"], "rooms"), except: try RedisWire.rooms(members["except"], "except"))
    }
}

/// A request one node publishes on the request channel for all the others.
///
/// Every request is JSON except `broadcastWithAck`, which is msgpack because the packet may
/// hold binary data; member order is the Node adapter's. `decode` accepts either encoding
/// for every request, as Node does (JSON when the first byte is `{`).
///
/// `@socket.io/redis-emitter` publishes `remoteJoin`, `remoteLeave` and `remoteDisconnect`
/// without any uid, and `serverSideEmit` with the uid `"emitter"` and no request id.
public enum RedisRequest: Sendable, Hashable {
    /// `allRooms()`: `{uid, requestId, type: 1}`; every node answers `RedisResponse.allRooms`.
    case allRooms(uid: String, requestId: String)
    /// `socketsJoin(rooms)`: `{uid, type: 2, opts, rooms}`; no answer.
    case remoteJoin(uid: String?, selector: RedisSelector, rooms: [String])
    /// `socketsLeave(rooms)`: `{uid, type: 3, opts, rooms}`; no answer.
    case remoteLeave(uid: String?, selector: RedisSelector, rooms: [String])
    /// `disconnectSockets(close)`: `{uid, type: 4, opts, close}`; no answer.
    case remoteDisconnect(uid: String?, selector: RedisSelector, close: Bool)
    /// `fetchSockets()`: `{uid, requestId, type: 5, opts}`; every node answers
    /// `RedisResponse.fetchSockets`.
    case remoteFetch(uid: String, requestId: String, selector: RedisSelector)
    /// `serverSideEmit(event, ...args)`: `{uid, type: 6, data}`, where `data` is the event name
    /// and its arguments. With a request id the sender waits for one
    /// `RedisResponse.serverSideEmit` from every other node.
    case serverSideEmit(uid: String, requestId: String?, data: [JSONValue])
    /// An emit that waits for acknowledgements, msgpack
    /// `{uid, requestId, type: 7, packet, opts: {rooms, except, flags}}`. Every node answers one
    /// `broadcastClientCount`, then one `broadcastAck` per acknowledging socket.
    case broadcastWithAck(requestId: String, broadcast: RedisBroadcast)

    public var type: RedisRequestType {
        switch self {
        case .allRooms: return .allRooms
        case .remoteJoin: return .remoteJoin
        case .remoteLeave: return .remoteLeave
        case .remoteDisconnect: return .remoteDisconnect
        case .remoteFetch: return .remoteFetch
        case .serverSideEmit: return .serverSideEmit
        case .broadcastWithAck: return .broadcast
        }
    }

    /// The requesting node, which ignores its own request (nil from the emitter).
    public var uid: String? {
        switch self {
        case .allRooms(let uid, _), .remoteFetch(let uid, _, _), .serverSideEmit(let uid, _, _): return uid
        case .remoteJoin(let uid, _, _), .remoteLeave(let uid, _, _), .remoteDisconnect(let uid, _, _): return uid
        case .broadcastWithAck(_, let broadcast): return broadcast.uid
        }
    }

    /// The id answers carry; nil for requests that expect none.
    public var requestId: String? {
        switch self {
        case .allRooms(_, let id), .remoteFetch(_, let id, _), .broadcastWithAck(let id, _): return id
        case .serverSideEmit(_, let id, _): return id
        case .remoteJoin, .remoteLeave, .remoteDisconnect: return nil
        }
    }

    public func encode() -> ByteBuffer {
        let type = JSONValue.int(type.rawValue)
        var members: OrderedDictionary<String, JSONValue> = [:]
        if let uid { members["uid"] = .string(uid) }
        switch self {
        case .allRooms(_, let requestId):
            members["requestId"] = .string(requestId)
            members["type"] = type
        case .remoteJoin(_, let selector, let rooms), .remoteLeave(_, let selector, let rooms):
            members["type"] = type
            members["opts"] = selector.json
            members["rooms"] = RedisWire.roomArray(rooms)
        case .remoteDisconnect(_, let selector, let close):
            members["type"] = type
            members["opts"] = selector.json
            members["close"] = .bool(close)
        case .remoteFetch(_, let requestId, let selector):
            members["requestId"] = .string(requestId)
            members["type"] = type
            members["opts"] = selector.json
        case .serverSideEmit(_, let requestId, let data):
            if let requestId { members["requestId"] = .string(requestId) }
            members["type"] = type
            members["data"] = .array(data)
        case .broadcastWithAck(let requestId, let broadcast):
            members["requestId"] = .string(requestId)
            members["type"] = type
            members["packet"] = broadcast.packet.redisJSON
            members["opts"] = broadcast.optionsJSON
            return MessagePack.encode(.object(members))
        }
        return RedisWire.json(.object(members))
    }

    public static func decode(_ bytes: ByteBuffer) throws(RedisWireError) -> RedisRequest {
        let members = try RedisWire.decodeRequestOrResponse(bytes)
        let typeNumber = try RedisWire.integer(members, "type")
        guard let type = RedisRequestType(rawValue: typeNumber) else { throw .unsupportedRequestType(typeNumber) }
        switch type {
        case .allRooms:
            return .allRooms(uid: try RedisWire.string(members, "uid"), requestId: try RedisWire.string(members, "requestId"))
        case .remoteJoin, .remoteLeave:
            // Adapters before 8.0 could also send `{sid, room}` without `opts` (remoteJoin());
            // 8.x only sends this form.
            let uid = try RedisWire.optionalString(members, "uid")
            let selector = try RedisSelector(members["opts"])
            let rooms = try RedisWire.rooms(members["rooms"], "rooms")
            return type == .remoteJoin
                ? .remoteJoin(uid: uid, selector: selector, rooms: rooms)
                : .remoteLeave(uid: uid, selector: selector, rooms: rooms)
        case .remoteDisconnect:
            // `close` is a JavaScript truthiness test in Node; the emitter always sends a boolean.
            return .remoteDisconnect(
                uid: try RedisWire.optionalString(members, "uid"),
                selector: try RedisSelector(members["opts"]),
                close: members["close"]?.boolValue ?? false
            )
        case .remoteFetch:
            return .remoteFetch(
                uid: try RedisWire.string(members, "uid"),
                requestId: try RedisWire.string(members, "requestId"),
                selector: try RedisSelector(members["opts"])
            )
        case .serverSideEmit:
            guard case .array(let data)? = members["data"], !data.isEmpty else {
                throw .malformed("\"data\" is not an event name and arguments")
            }
            return .serverSideEmit(
                uid: try RedisWire.string(members, "uid"),
                requestId: try RedisWire.optionalString(members, "requestId"),
                data: data
            )
        case .broadcast:
            guard let packet = members["packet"] else { throw .malformed("\"packet\" is missing") }
            let broadcast = try RedisBroadcast(
                uid: try RedisWire.string(members, "uid"),
                packetJSON: packet,
                optionsJSON: members["opts"] ?? .null
            )
            return .broadcastWithAck(requestId: try RedisWire.string(members, "requestId"), broadcast: broadcast)
        case .sockets, .broadcastClientCount, .broadcastAck:
            throw .unsupportedRequestType(typeNumber)
        }
    }
}
