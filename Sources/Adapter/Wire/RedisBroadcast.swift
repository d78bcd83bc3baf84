import NIOCore
import OrderedCollections
import SidecastJSON
import SocketIO

/// One broadcast as the Node Redis adapter publishes it on a broadcast channel.
///
/// The message is the msgpack array `[uid, packet, opts]`:
/// - `packet` is the socket.io-parser packet object `{type, data, nsp}` (plus `id` when set).
///   Binary arguments stay in `data` as msgpack `bin`, and `type` stays EVENT (2): the
///   parser only picks BINARY_EVENT when it writes the packet for a client.
/// - `opts` is `{rooms, except, flags}`; the emitter writes `{rooms, flags, except}`, and a
///   Node server puts whatever flags the emit carried (`volatile`, `compress`, `timeout`,
///   `expectSingleResponse`, ...) into `flags`.
///
/// `@socket.io/redis-emitter` sends the same message with uid `"emitter"`.
public struct RedisBroadcast: Sendable, Hashable {
    /// The uid of the publishing adapter; a node ignores its own messages.
    public var uid: String
    /// The packet to deliver; `packet.namespace` is the namespace it targets.
    public var packet: SocketIOPacket
    /// Deliver to sockets in any of these rooms; empty means every socket of the namespace.
    public var rooms: [String]
    /// Never deliver to sockets in these rooms.
    public var except: [String]
    public var flags: RedisBroadcastFlags

    public init(uid: String, packet: SocketIOPacket, rooms: [String] = [], except: [String] = [], flags: RedisBroadcastFlags = .init()) {
        self.uid = uid
        self.packet = packet
        self.rooms = rooms
        self.except = except
        self.flags = flags
    }

    /// The channel Node would publish this broadcast on.
    public func channel(prefix: String = RedisChannels.defaultPrefix) -> String {
        RedisChannels(prefix: prefix, namespace: packet.namespace).broadcastChannel(rooms: rooms)
    }

    public func encode() -> ByteBuffer {
        var buffer = ByteBuffer()
        encode(into: &buffer)
        return buffer
    }

    public func encode(into buffer: inout ByteBuffer) {
        let message: JSONValue = [.string(uid), packet.redisJSON, optionsJSON]
        MessagePack.encode(message, into: &buffer)
    }

    /// `opts` as the adapter writes it: `{rooms, except, flags}`.
    var optionsJSON: JSONValue {
        ["rooms": RedisWire.roomArray(rooms), "except": RedisWire.roomArray(except), "flags": .object(flags.members)]
    }

    /// Builds a broadcast from the decoded `packet` and `opts` members.
    init(uid: String, packetJSON: JSONValue, optionsJSON: JSONValue) throws(RedisWireError) {
        guard case .object(let options) = optionsJSON else { throw .malformed("\"opts\" is not an object") }
        self.init(
            uid: uid,
            packet: try SocketIOPacket(redisJSON: packetJSON),
            rooms: try RedisWire.rooms(options["rooms"], "rooms"),
            except: try RedisWire.rooms(options["except"], "except"),
            flags: try RedisBroadcastFlags(options["flags"])
        )
    }

    public static func decode(_ bytes: ByteBuffer) throws(RedisWireError) -> RedisBroadcast {
        // With no uid and namespace to skip, this never returns nil.
        try decode(bytes, ignoringUID: nil, namespace: nil)!
    }

    /// Decodes a broadcast unless it is this node's own or for another namespace.
    ///
    /// Returns nil when the sender's uid is `ownUID`, or when `namespace` is given and the
    /// packet's namespace differs (a packet without one is for "/", as Node assumes). Both are
    /// checked on msgpack-c's object tree before any of the payload is converted, so dropping
    /// a message costs the unpacking only.
    public static func decode(
        _ bytes: ByteBuffer,
        ignoringUID ownUID: String?,
        namespace: String?
    ) throws(RedisWireError) -> RedisBroadcast? {
        let split: Split
        do {
            split = try MessagePack.withUnpacked(bytes) { (root) throws(MessagePackError) in
                try Split(root, ignoringUID: ownUID, namespace: namespace)
            }
        } catch {
            throw .messagePack(error)
        }
        switch split {
        case .skipped:
            return nil
        case .malformed(let reason):
            throw .malformed(reason)
        case .parts(let uid, let packet, let options):
            return try RedisBroadcast(uid: uid, packetJSON: packet, optionsJSON: options)
        }
    }

    /// `[uid, packet, opts]` taken apart on msgpack-c's tree, converting the packet and the
    /// options only when the message is not skipped.
    private enum Split {
        case skipped
        case malformed(String)
        case parts(uid: String, packet: JSONValue, options: JSONValue)

        init(_ root: MessagePackObject, ignoringUID ownUID: String?, namespace: String?) throws(MessagePackError) {
            guard let count = root.arrayCount, count >= 2 else {
                self = .malformed("not an array [uid, packet, opts]")
                return
            }
            guard let uid = root[0].stringValue else {
                self = .malformed("the uid is not a string")
                return
            }
            if uid == ownUID {
                self = .skipped
                return
            }
            if let namespace, Self.namespace(ofPacket: root[1]) != namespace {
                self = .skipped
                return
            }
            // Node reads `opts.rooms` unguarded; a message without options is taken as "all".
            let options: JSONValue = count >= 3 ? try root[2].jsonValue(depth: 1) : [:]
            self = .parts(uid: uid, packet: try root[1].jsonValue(depth: 1), options: options)
        }

        /// The packet's `nsp` member; "/" when it has none, as Node assumes.
        private static func namespace(ofPacket packet: MessagePackObject) -> String? {
            guard packet.isMap else { return nil }
            guard let nsp = packet.member("nsp") else { return "/" }
            return nsp.stringValue
        }
    }
}

/// The `flags` of a broadcast, kept as the JSON object they travel as.
///
/// Node copies the emit's flags verbatim, so besides the ones modelled here a message may carry
/// `timeout`, `expectSingleResponse`, `binary` or flags of later Socket.IO versions; `members`
/// keeps all of them, in order, so nothing is lost when a message is decoded and re-encoded.
public struct RedisBroadcastFlags: Sendable, Hashable {
    public var members: OrderedDictionary<String, JSONValue>

    public init(members: OrderedDictionary<String, JSONValue>) {
        self.members = members
    }

    /// Flags as a Node server sets them: `volatile` and `local` only when true, `compress`
    /// when given, `timeout` (milliseconds) for emits that wait for acknowledgements.
    public init(volatile: Bool = false, compress: Bool? = nil, local: Bool = false, timeout: Int64? = nil) {
        members = [:]
        self.volatile = volatile
        self.compress = compress
        self.local = local
        self.timeout = timeout
    }

    init(_ value: JSONValue?) throws(RedisWireError) {
        switch value {
        case nil, .null?: self.init(members: [:])
        case .object(let members)?: self.init(members: members)
        default: throw .malformed("\"flags\" is not an object")
        }
    }

    /// The event may be dropped for clients that can't take it right now.
    public var volatile: Bool {
        get { members["volatile"]?.boolValue ?? false }
        set { members["volatile"] = newValue ? .bool(true) : nil }
    }

    /// Whether to compress the WebSocket frame; nil when the emit didn't say.
    public var compress: Bool? {
        get { members["compress"]?.boolValue }
        set { members["compress"] = newValue.map { .bool($0) } }
    }

    /// Deliver on the publishing node only; such a broadcast is never published, so a received
    /// one with this flag set came from a misbehaving peer.
    public var local: Bool {
        get { members["local"]?.boolValue ?? false }
        set { members["local"] = newValue ? .bool(true) : nil }
    }

    /// How long (milliseconds) the emitting server waits for acknowledgements.
    public var timeout: Int64? {
        get { members["timeout"]?.intValue }
        set { members["timeout"] = newValue.map { .int($0) } }
    }
}

extension SocketIOPacket {
    /// The packet object socket.io-parser would hold: `{type, data, nsp}`, then `id` when set.
    var redisJSON: JSONValue {
        var members: OrderedDictionary<String, JSONValue> = ["type": .int(Int64(redisType.rawValue))]
        if let data { members["data"] = data }
        members["nsp"] = .string(namespace)
        if let id { members["id"] = .int(Int64(id)) }
        return .object(members)
    }

    /// EVENT or ACK whether or not the data holds binary: the parser decides that when it
    /// writes for a client.
    private var redisType: SocketIOPacketType {
        switch type {
        case .binaryEvent: return .event
        case .binaryAck: return .ack
        default: return type
        }
    }

    init(redisJSON value: JSONValue) throws(RedisWireError) {
        guard case .object(let members) = value else { throw .malformed("the packet is not an object") }
        let typeNumber = try RedisWire.integer(members, "type")
        guard let rawType = UInt8(exactly: typeNumber), let type = SocketIOPacketType(rawValue: rawType) else {
            throw .malformed("unknown packet type \(typeNumber)")
        }
        let id: Int?
        switch members["id"] {
        case nil, .null?: id = nil
        case let value?:
            guard let number = value.intValue, let exact = Int(exactly: number), exact >= 0 else {
                throw .malformed("\"id\" is not an acknowledgement id")
            }
            id = exact
        }
        self.init(
            type: type == .binaryEvent ? .event : type == .binaryAck ? .ack : type,
            namespace: try RedisWire.optionalString(members, "nsp") ?? "/",
            id: id,
            data: members["data"]
        )
    }
}
