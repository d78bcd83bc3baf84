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
    /// Room name → ids of member sockets. A socket's own id is a room too.
    public private(set) var rooms: [String: Set<String>] = [:]
    /// Called when a room gets its first local member (`true`) and loses its last (`false`),
    /// as Node's adapter emits `create-room` and `delete-room`: the sharded Redis adapter
    /// subscribes a room's channel only while the room exists on this node.
    public var onRoomChange: ((_ room: String, _ exists: Bool) -> Void)?
    private var nextAckID = 0
    /// Sockets connected to this namespace on this node.
    private let socketsGauge: Gauge

    init(name: String, server: SocketIOServer) {
        self.name = name
        self.server = server
        self.socketsGauge = Gauge(label: "sidecast_connected_sockets", dimensions: [("namespace", name)])
    }

    /// Ack ids count per namespace, as in Node, so a broadcast can share one id among its targets.
    func makeAckID() -> Int {
        defer { nextAckID += 1 }
        return nextAckID
    }

    func insert(_ socket: SocketIOSocket) {
        sockets[socket.id] = socket
        socketsGauge.record(sockets.count)
    }

    func removeSocket(_ socket: SocketIOSocket) {
        sockets.removeValue(forKey: socket.id)
        socketsGauge.record(sockets.count)
    }

    func add(_ socketID: String, to room: String) {
        let created = rooms[room] == nil
        rooms[room, default: []].insert(socketID)
        if created { onRoomChange?(room, true) }
    }

    func remove(_ socketID: String, from room: String) {
        guard var members = rooms[room] else { return }
        members.remove(socketID)
        rooms[room] = members.isEmpty ? nil : members
        if members.isEmpty { onRoomChange?(room, false) }
    }

    /// The local sockets a broadcast with `options` reaches: members of any of `rooms` (every
    /// socket when empty), minus members of any room in `except`.
    public func sockets(matching options: BroadcastOptions) -> [SocketIOSocket] {
        // The common case (one room, nobody excluded) needs no set of ids already seen.
        if options.except.isEmpty, options.rooms.count == 1, let room = options.rooms.first {
            guard let members = rooms[room] else { return [] }
            var result: [SocketIOSocket] = []
            result.reserveCapacity(members.count)
            for id in members {
                if let socket = sockets[id] { result.append(socket) }
            }
            return result
        }
        let excluded = options.except.reduce(into: Set<String>()) { result, room in
            if let members = rooms[room] { result.formUnion(members) }
        }
        if options.rooms.isEmpty {
            if excluded.isEmpty { return Array(sockets.values) }
            return sockets.values.filter { !excluded.contains($0.id) }
        }
        var seen = Set<String>()
        var result: [SocketIOSocket] = []
        for room in options.rooms {
            guard let members = rooms[room] else { continue }
            for id in members where !excluded.contains(id) && seen.insert(id).inserted {
                if let socket = sockets[id] { result.append(socket) }
            }
        }
        return result
    }
}
