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
    /// Room name → ids of member sockets, except the rooms sockets are in as their own id:
    /// every socket is, and a one-member set per socket cost ~200 bytes per connection.
    /// Those are a flag on the socket; `rooms` shows both.
    private var sharedRooms: [String: Set<String>] = [:]
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
    func add(_ socketID: String, to room: String) {
        let isNew = sharedRooms[room] == nil
        let created = isNew && owner(of: room) == nil
        sharedRooms[room, default: []].insert(socketID)
        if created { onRoomChange?(room, true) }
        // Members besides its owner, whether the owner is here or not.
        if isNew { server.roomChanged(room, in: name, exists: true) }
    }

    func remove(_ socketID: String, from room: String) {
        guard var members = sharedRooms.removeValue(forKey: room) else { return }
        members.remove(socketID)
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

    /// The local sockets a broadcast with `options` reaches: members of any of `rooms` (every
    /// socket when empty), minus members of any room in `except`.
    public func sockets(matching options: BroadcastOptions) -> [SocketIOSocket] {
        // The common case (one room, nobody excluded) needs no set of ids already seen.
        if options.except.isEmpty, options.rooms.count == 1, let room = options.rooms.first {
            let owner = owner(of: room)
            guard let members = sharedRooms[room] else { return owner.map { [$0] } ?? [] }
            var result: [SocketIOSocket] = []
            result.reserveCapacity(members.count + 1)
            // A room named after a socket holds that socket (in its own room) and any other
            // socket that joined it by name; the shared set never holds the owner itself.
            if let owner { result.append(owner) }
            for id in members {
                if let socket = sockets[id] { result.append(socket) }
            }
            return result
        }
        let excluded = options.except.reduce(into: Set<String>()) { result, room in
            if let members = sharedRooms[room] { result.formUnion(members) }
            if let owner = owner(of: room) { result.insert(owner.id) }
        }
        if options.rooms.isEmpty {
            if excluded.isEmpty { return Array(sockets.values) }
            return sockets.values.filter { !excluded.contains($0.id) }
        }
        var seen = Set<String>()
        var result: [SocketIOSocket] = []
        for room in options.rooms {
            if let owner = owner(of: room), !excluded.contains(owner.id), seen.insert(owner.id).inserted {
                result.append(owner)
            }
            guard let members = sharedRooms[room] else { continue }
            for id in members where !excluded.contains(id) && seen.insert(id).inserted {
                if let socket = sockets[id] { result.append(socket) }
            }
        }
        return result
    }
}

/// A namespace's rooms as a read-only map from room name to member socket ids, sockets'
/// own-id rooms included. Built from the namespace's tables when read.
public struct NamespaceRooms {
    fileprivate let shared: [String: Set<String>]
    fileprivate let sockets: [String: SocketIOSocket]

    /// The ids in `room`, nil when nobody is in it.
    public subscript(room: String) -> Set<String>? {
        var members = self.shared[room]
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
