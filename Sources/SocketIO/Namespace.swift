import Metrics
import SidecastJSON

/// A namespace's sockets and rooms on this node. Confined to the server's loop.
///
/// Rooms live here rather than in an adapter: a room's members are sockets of this node and
/// share their lifetime. The cluster adapter decides which nodes a broadcast reaches; the
/// namespace decides which of its own sockets.
public final class Namespace {
    public let name: String
    unowned let server: SocketIOServer
    public private(set) var sockets: [String: SocketIOSocket] = [:]
    /// Room name → member sockets, except the rooms sockets are in as their own id: every
    /// socket is, and a one-member set per socket cost ~200 bytes per connection. Those are a
    /// flag on the socket; `rooms` shows both. Members are the sockets themselves rather than
    /// their ids, so a broadcast reaches them without a lookup per recipient.
    private var sharedRooms: [String: Set<RoomMember>] = [:]
    /// Called when a room gets its first local member (`true`) and loses its last (`false`),
    /// as Node's adapter emits `create-room` and `delete-room`: the sharded Redis adapter
    /// subscribes a room's channel only while the room exists on this node.
    public var onRoomChange: ((_ room: String, _ exists: Bool) -> Void)?
    private var nextAckID = 0
    /// Sockets connected to this namespace on this node: counted up and down rather than set,
    /// so the shards of a node on several loops add up.
    private let socketsMeter: Meter

    init(name: String, server: SocketIOServer) {
        self.name = name
        self.server = server
        self.socketsMeter = Meter(label: "sidecast_connected_sockets", dimensions: [("namespace", name)])
    }

    /// Ack ids count per namespace, as in Node, so a broadcast can share one id among its targets.
    func makeAckID() -> Int {
        defer { nextAckID += 1 }
        return nextAckID
    }

    func insert(_ socket: SocketIOSocket) {
        if sockets.updateValue(socket, forKey: socket.id) == nil { socketsMeter.increment() }
    }

    func removeSocket(_ socket: SocketIOSocket) {
        if sockets.removeValue(forKey: socket.id) != nil { socketsMeter.decrement() }
    }

    /// Room name → ids of member sockets. A socket's own id is a room too.
    public var rooms: NamespaceRooms {
        NamespaceRooms(shared: sharedRooms, sockets: sockets)
    }

    /// Adds a socket to a room other than its own-id room.
    func add(_ socket: SocketIOSocket, to room: String) {
        let isNew = sharedRooms[room] == nil
        let created = isNew && owner(of: room) == nil
        sharedRooms[room, default: []].insert(RoomMember(socket))
        if created { onRoomChange?(room, true) }
        // Members besides its owner, whether the owner is here or not.
        if isNew { server.roomChanged(room, in: name, exists: true) }
    }

    func remove(_ socket: SocketIOSocket, from room: String) {
        guard var members = sharedRooms.removeValue(forKey: room) else { return }
        members.remove(RoomMember(socket))
        guard members.isEmpty else {
            sharedRooms[room] = members
            return
        }
        if owner(of: room) == nil { onRoomChange?(room, false) }
        server.roomChanged(room, in: name, exists: false)
    }

    /// `socket` entered or left its own-id room (its flag already says which).
    func ownRoomChanged(of socket: SocketIOSocket) {
        guard sharedRooms[socket.id] == nil else { return }
        onRoomChange?(socket.id, socket.isInOwnRoom)
    }

    /// The socket whose own-id room `room` is, if it is in it.
    private func owner(of room: String) -> SocketIOSocket? {
        guard let socket = sockets[room], socket.isInOwnRoom else { return nil }
        return socket
    }

    /// Whether anybody is in `room`, its owner in its own-id room included: `rooms[room] != nil`
    /// without gathering the members' ids.
    public func hasMembers(_ room: String) -> Bool {
        sharedRooms[room] != nil || owner(of: room) != nil
    }

    /// The local sockets a broadcast with `options` reaches: members of any of `rooms` (every
    /// socket when empty), minus members of any room in `except`.
    public func sockets(matching options: BroadcastOptions) -> [SocketIOSocket] {
        targets(matching: options).array
    }

    /// The sockets `sockets(matching:)` returns, without an array in the common cases: the
    /// members of one room, or every socket.
    func targets(matching options: BroadcastOptions) -> BroadcastTargets {
        // The common case (one room, nobody excluded) needs no set of sockets already seen.
        if options.except.isEmpty, options.rooms.count == 1, let room = options.rooms.first {
            // A room named after a socket holds that socket (in its own room) and any other
            // socket that joined it by name; the shared set never holds the owner itself.
            return BroadcastTargets(.room(owner: owner(of: room), members: sharedRooms[room] ?? []))
        }
        var excluded = Set<ObjectIdentifier>()
        for room in options.except {
            if let members = sharedRooms[room] {
                for member in members { excluded.insert(ObjectIdentifier(member.socket)) }
            }
            if let owner = owner(of: room) { excluded.insert(ObjectIdentifier(owner)) }
        }
        if options.rooms.isEmpty {
            if excluded.isEmpty { return BroadcastTargets(.everyone(sockets.values)) }
            return BroadcastTargets(.list(sockets.values.filter { !excluded.contains(ObjectIdentifier($0)) }))
        }
        // Excluded sockets count as seen, so they are skipped like a second sight of a socket.
        var seen = excluded
        var result: [SocketIOSocket] = []
        for room in options.rooms {
            if let owner = owner(of: room), seen.insert(ObjectIdentifier(owner)).inserted {
                result.append(owner)
            }
            guard let members = sharedRooms[room] else { continue }
            for member in members where seen.insert(ObjectIdentifier(member.socket)).inserted {
                result.append(member.socket)
            }
        }
        return BroadcastTargets(.list(result))
    }
}

/// A socket as a room member: equal and hashed by identity, as the room holds the socket itself.
struct RoomMember: Hashable {
    let socket: SocketIOSocket

    init(_ socket: SocketIOSocket) {
        self.socket = socket
    }

    static func == (lhs: RoomMember, rhs: RoomMember) -> Bool {
        lhs.socket === rhs.socket
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(socket))
    }
}

/// The local sockets a broadcast reaches, each once, as the namespace's tables were when they
/// were chosen: a socket that joins, leaves or disconnects while the broadcast is delivered
/// (a slow client does) changes neither what is visited nor the tables under it, which copy
/// themselves on that first change.
struct BroadcastTargets {
    enum Selection {
        case room(owner: SocketIOSocket?, members: Set<RoomMember>)
        case everyone(Dictionary<String, SocketIOSocket>.Values)
        case list([SocketIOSocket])
    }

    let selection: Selection

    init(_ selection: Selection) {
        self.selection = selection
    }

    var count: Int {
        switch selection {
        case .room(let owner, let members): members.count + (owner == nil ? 0 : 1)
        case .everyone(let sockets): sockets.count
        case .list(let sockets): sockets.count
        }
    }

    var isEmpty: Bool { count == 0 }

    /// Calls `body` with each socket: one switch, then a loop over the table.
    func forEach(_ body: (SocketIOSocket) -> Void) {
        switch selection {
        case .room(let owner, let members):
            if let owner { body(owner) }
            Self.forEachPrefetching(members.lazy.map(\.socket), body)
        case .everyone(let sockets):
            Self.forEachPrefetching(sockets, body)
        case .list(let sockets):
            Self.forEachPrefetching(sockets, body)
        }
    }

    /// Calls `body` with each socket, and meanwhile has the CPU load what the next ones' deliveries
    /// will read: in a large room each recipient's session, WebSocket and channel are out of the
    /// cache, and a delivery that waits for each in turn spends more time waiting than working
    /// (a sixth of the user time per fan-out delivery, for a tenth more instructions,
    /// BENCHMARKS.md).
    private static func forEachPrefetching<Sockets: Sequence<SocketIOSocket>>(
        _ sockets: Sockets, _ body: (SocketIOSocket) -> Void
    ) {
        var upcoming = sockets.makeIterator()
        // One, two and three sockets ahead of the one delivered to: the third's session, the
        // second's WebSocket and the first's channel are loaded while `body` runs.
        var first = upcoming.next()
        var second = upcoming.next()
        var third = upcoming.next()
        if let first { first.prefetchSession(); first.session.prefetchTransport() }
        if let second { second.prefetchSession() }
        while let current = first {
            first = second
            second = third
            third = upcoming.next()
            third?.prefetchSession()
            second?.session.prefetchTransport()
            first?.session.prefetchChannel()
            body(current)
        }
    }

    var array: [SocketIOSocket] {
        switch selection {
        case .room(let owner, let members):
            var result: [SocketIOSocket] = []
            result.reserveCapacity(count)
            if let owner { result.append(owner) }
            for member in members { result.append(member.socket) }
            return result
        case .everyone(let sockets):
            return Array(sockets)
        case .list(let sockets):
            return sockets
        }
    }
}

/// A namespace's rooms as a read-only map from room name to member socket ids, sockets'
/// own-id rooms included. Built from the namespace's tables when read.
public struct NamespaceRooms {
    fileprivate let shared: [String: Set<RoomMember>]
    fileprivate let sockets: [String: SocketIOSocket]

    /// The ids in `room`, nil when nobody is in it.
    public subscript(room: String) -> Set<String>? {
        var members = self.shared[room].map { Set($0.lazy.map(\.socket.id)) }
        if let owner = self.sockets[room], owner.isInOwnRoom {
            members = (members ?? []).union(CollectionOfOne(owner.id))
        }
        return members
    }

    /// Every room with at least one member.
    public var keys: [String] {
        var keys = Array(self.shared.keys)
        for (id, socket) in self.sockets where socket.isInOwnRoom && self.shared[id] == nil {
            keys.append(id)
        }
        return keys
    }
}
