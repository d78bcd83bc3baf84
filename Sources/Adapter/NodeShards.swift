import EngineIO
import NIOCore
import SidecastJSON
import SocketIO

/// This node's sockets as the adapter reaches them: the Socket.IO servers of its event loops,
/// one shard each, which own the sockets and rooms of the clients their loop serves.
///
/// The adapter lives on the home loop, the first shard's. An operation for every shard runs on
/// each shard's own loop: at once for a shard on the home loop, handed over with `execute` for
/// the others. A loop runs what it is handed in the order it was handed, so operations the
/// adapter issues reach every shard in the order issued, and two emits to one socket arrive in
/// order. Answers come back to the home loop the same way and are gathered in shard order;
/// no lock, no table shared between loops.
///
/// With one shard every call is direct and synchronous, as before shards existed.
public final class NodeShards {
    /// The home loop: the adapter's, where every completion runs.
    public let eventLoop: EventLoop
    private let servers: [NIOLoopBound<SocketIOServer>]
    /// Per namespace, how many shards hold each room, for the rooms a transport follows; kept
    /// only on a node of several shards, where no single server knows.
    private var roomHolders: [String: [String: Int]] = [:]
    /// Per shard, the rooms named like a socket id that have members there (other than the
    /// sockets' own-id rooms), by namespace, as the shards report them: an emit to a socket id
    /// also goes to these.
    private var socketNamedRooms: [[String: Set<String>]]
    /// Per shard, the operations handed to it that may add sockets to rooms and have not
    /// come back: the rooms they make are not reported yet, so an emit to a socket id goes
    /// to that shard too while any is out.
    private var operationsOut: [Int]
    /// Dropped sockets' sessions and the packets they may miss, with recovery on.
    private var store: SessionStore?
    /// Restored sockets living on another shard than their id names (their client came back
    /// through a connection another loop accepted): socket id → the shard that has it.
    private var relocated: [String: Int] = [:]

    /// `servers`, each bound to its own loop; the first is on the home loop. Call on the home
    /// loop.
    public init(servers: [NIOLoopBound<SocketIOServer>]) {
        precondition(!servers.isEmpty, "a node has at least one shard")
        self.servers = servers
        self.eventLoop = servers[0].eventLoop
        self.socketNamedRooms = Array(repeating: [:], count: servers.count)
        self.operationsOut = Array(repeating: 0, count: servers.count)
        guard servers.count > 1 else { return }
        let shards = NIOLoopBound(self, eventLoop: eventLoop)
        let home = eventLoop
        for (index, server) in servers.enumerated() {
            let onHome = server.eventLoop === home
            let follow: @Sendable () -> Void = {
                server.value.onSocketNamedRoomChange = { namespace, room, exists in
                    if onHome {
                        shards.value.socketNamedRoomChanged(room, namespace: namespace, exists: exists, shard: index)
                    } else {
                        home.execute { shards.value.socketNamedRoomChanged(room, namespace: namespace, exists: exists, shard: index) }
                    }
                }
            }
            if onHome { follow() } else { server.eventLoop.execute(follow) }
        }
    }

    /// A node of one shard. Call on the server's loop.
    public convenience init(server: SocketIOServer) {
        self.init(servers: [NIOLoopBound(server, eventLoop: server.eventLoop)])
    }

    public var count: Int { servers.count }

    /// The home shard's server, on the home loop.
    public var home: SocketIOServer { servers[0].value }

    /// Runs `work` on the loop of the shard that owns the socket `socketID` (its id says which),
    /// then `completion` on the home loop with the result; before returning when that is the
    /// home shard. An id that is not one of ours goes to the home shard, which has no such
    /// socket. Work handed to one shard runs in the order handed.
    public func withShard<Value: Sendable>(
        owning socketID: String,
        _ work: @escaping @Sendable (SocketIOServer) -> Value,
        completion: @escaping (Value) -> Void
    ) {
        let index = servers.count == 1 ? 0 : shardIndex(owning: socketID)
        let server = servers[index]
        guard server.eventLoop !== eventLoop else { return completion(work(server.value)) }
        // The work may join the socket to rooms: counted out until its answer is back.
        operationsOut[index] += 1
        let done = NIOLoopBound({ [self] (result: Value) in
            operationsOut[index] -= 1
            completion(result)
        }, eventLoop: eventLoop)
        let home = eventLoop
        server.eventLoop.execute {
            let result = work(server.value)
            home.execute { done.value(result) }
        }
    }

    /// The shard that has the socket `socketID`: the one its id names, unless it was restored
    /// on another. An id that is not one of ours goes to the home shard.
    public func shardIndex(owning socketID: String) -> Int {
        relocated[socketID] ?? LoopShard.index(of: socketID, count: servers.count) ?? 0
    }

    /// Runs `work` on every shard's loop.
    func forEach(_ work: @escaping @Sendable (SocketIOServer) -> Void) {
        for server in servers {
            if server.eventLoop === eventLoop {
                work(server.value)
            } else {
                server.eventLoop.execute { work(server.value) }
            }
        }
    }

    /// Runs `work` on every shard's loop, then `completion` on the home loop with the results
    /// in shard order. With one shard, before returning.
    func gather<Value: Sendable>(
        _ work: @escaping @Sendable (SocketIOServer) -> Value,
        completion: @escaping ([Value]) -> Void
    ) {
        if servers.count == 1 {
            return completion([work(home)])
        }
        let gathering = NIOLoopBound(Gathering(count: servers.count, completion: completion), eventLoop: eventLoop)
        let home = eventLoop
        for (index, server) in servers.enumerated() {
            if server.eventLoop === home {
                gathering.value.receive(work(server.value), at: index)
            } else {
                server.eventLoop.execute {
                    let result = work(server.value)
                    home.execute { gathering.value.receive(result, at: index) }
                }
            }
        }
    }

    // MARK: Operations over every shard

    /// Every broadcast without acks for this node's sockets passes here, on the home loop,
    /// whoever sent it (a backend, another node): the one place where the session store
    /// numbers the packets it keeps, in the order every shard then receives them. A new way
    /// to deliver such a packet (to one shard only, say) must keep it here first.
    ///
    /// An emit whose every room is a socket id (`to` one socket, or a few) goes to the shards
    /// that have those sockets, and to the others only where a room of such a name exists or
    /// may just have been made; any other broadcast goes to every shard. Whatever shards an
    /// emit goes to, it is handed to each in the order issued, after every earlier one: two
    /// emits to one socket arrive in order, however each was routed.
    func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        let packet = store?.keep(packet, options: options) ?? packet
        guard servers.count > 1, let targets = shards(reaching: options) else {
            return forEach { $0.broadcast(packet, options: options) }
        }
        for (index, server) in servers.enumerated() where targets[index] {
            if server.eventLoop === eventLoop {
                server.value.broadcast(packet, options: options)
            } else {
                server.eventLoop.execute { server.value.broadcast(packet, options: options) }
            }
        }
    }

    /// The shards a broadcast whose every room names a socket may reach, or nil when a room
    /// does not look like a socket id of this node.
    private func shards(reaching options: BroadcastOptions) -> [Bool]? {
        guard !options.rooms.isEmpty else { return nil }
        var targets = operationsOut.map { $0 > 0 }
        for room in options.rooms {
            guard room.utf8.count == RandomID.socketIDLength, LoopShard.index(of: room, count: servers.count) != nil else { return nil }
            // The shard its id names, or the one a recovered socket was restored on.
            targets[shardIndex(owning: room)] = true
        }
        for (index, rooms) in socketNamedRooms.enumerated() where !targets[index] {
            if let named = rooms[options.namespace], !named.isDisjoint(with: options.rooms) { targets[index] = true }
        }
        return targets
    }

    fileprivate func socketNamedRoomChanged(_ room: String, namespace: String, exists: Bool, shard: Int) {
        if exists {
            socketNamedRooms[shard][namespace, default: []].insert(room)
        } else {
            socketNamedRooms[shard][namespace]?.remove(room)
            if socketNamedRooms[shard][namespace]?.isEmpty == true { socketNamedRooms[shard][namespace] = nil }
        }
    }

    /// Joins matching sockets to `rooms` on every shard; each shard's part counts as out until
    /// it has run (see `operationsOut`).
    func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        guard servers.count > 1 else { return home.addSockets(options, rooms: rooms) }
        let shards = NIOLoopBound(self, eventLoop: eventLoop)
        let home = eventLoop
        for (index, server) in servers.enumerated() {
            if server.eventLoop === home {
                server.value.addSockets(options, rooms: rooms)
            } else {
                operationsOut[index] += 1
                server.eventLoop.execute {
                    server.value.addSockets(options, rooms: rooms)
                    home.execute { shards.value.operationsOut[index] -= 1 }
                }
            }
        }
    }

    func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        forEach { $0.removeSockets(options, rooms: rooms) }
    }

    func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        forEach { $0.disconnectSockets(options, close: close) }
    }

    /// What every shard's matching sockets say of themselves, as `describe` puts it (on the
    /// socket's loop, so it may read anything of the socket).
    func fetchSockets<Details: Sendable>(
        _ options: BroadcastOptions,
        describe: @escaping @Sendable (SocketIOSocket) -> Details,
        completion: @escaping ([Details]) -> Void
    ) {
        gather({ $0.fetchSockets(options).map(describe) }, completion: { completion($0.flatMap { $0 }) })
    }

    func allRooms(namespace: String, completion: @escaping (Set<String>) -> Void) {
        gather({ $0.allRooms(namespace: namespace) }, completion: { completion($0.reduce(into: []) { $0.formUnion($1) }) })
    }

    /// Emits `packet` with an ack id to every shard's matching sockets. `counted` hears, once
    /// every shard has emitted, how many sockets were asked; `onAck` hears each answer, never
    /// before `counted`. Both run on the home loop. The result stops answers from counting.
    func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        counted: @escaping (Int) -> Void,
        onAck: @escaping (_ socketID: String, _ args: [JSONValue]) -> Void
    ) -> () -> Void {
        if servers.count == 1 {
            let (count, cancel) = home.broadcastWithAck(packet, options: options, onAck: onAck)
            counted(count)
            return cancel
        }
        // Answers of a shard counted early wait until every shard has counted, so that whoever
        // hears `onAck` already knows how many answers to expect.
        let collector = NIOLoopBound(AckCollector(counted: counted, onAck: onAck), eventLoop: eventLoop)
        let home = eventLoop
        gather({ server in
            let (count, cancel) = server.broadcastWithAck(packet, options: options) { socketID, args in
                if server.eventLoop === home {
                    collector.value.answer(socketID, args)
                } else {
                    home.execute { collector.value.answer(socketID, args) }
                }
            }
            return (count: count, cancel: NIOLoopBound(cancel, eventLoop: server.eventLoop))
        }, completion: { shards in
            collector.value.allCounted(shards.reduce(0) { $0 + $1.count }, cancels: shards.map(\.cancel))
        })
        return { collector.value.cancel() }
    }

    // MARK: Connection state recovery

    /// Turns recovery on with `store`: every shard's server persists and restores sessions
    /// through it. Call on the home loop, before clients connect. The servers then hold this
    /// object (through their `recovery`) as it holds them: both live as long as the node.
    public func enableRecovery(store: SessionStore) {
        self.store = store
        let shards = NIOLoopBound(self, eventLoop: eventLoop)
        for (index, server) in servers.enumerated() {
            let install: @Sendable () -> Void = {
                server.value.recovery = ShardSessionRecovery(shard: index, loop: server.eventLoop, shards: shards)
            }
            if server.eventLoop === eventLoop { install() } else { server.eventLoop.execute(install) }
        }
    }

    fileprivate func persist(_ session: PersistedSession) {
        store?.persist(session)
    }

    fileprivate func lookUp(pid: String, offset: String, namespace: String, completion: @escaping (String?) -> Void) {
        guard let store else { return completion(nil) }
        store.lookUp(pid: pid, offset: offset, namespace: namespace, completion: completion)
    }

    /// Restores a session for shard `shard`, which will hold the socket; a socket whose id names
    /// another shard is routed there from now on, before the shard (and so any backend) hears
    /// of it.
    fileprivate func restore(
        pid: String, offset: String, namespace: String, for shard: Int, completion: @escaping (RestoredSession?) -> Void
    ) {
        guard let store else { return completion(nil) }
        store.restore(pid: pid, offset: offset, namespace: namespace) { [self] restored in
            if let sid = restored?.session.sid, servers.count > 1 {
                relocated[sid] = LoopShard.index(of: sid, count: servers.count) == shard ? nil : shard
            }
            completion(restored)
        }
    }

    fileprivate func restoredSocketLeft(sid: String, shard: Int) {
        if relocated[sid] == shard { relocated[sid] = nil }
    }

    // MARK: Rooms of the whole node

    /// Follows the rooms of `namespace` over every shard. `onChange` hears (on the home loop)
    /// when a room gets its first member on this node and loses its last: on any shard, that is.
    /// `isPrivate` says whether the room is a socket's own-id room.
    func followRooms(of namespace: String, onChange: @escaping (_ room: String, _ exists: Bool, _ isPrivate: Bool) -> Void) {
        if servers.count == 1 {
            let server = home
            let followed = server.namespace(named: namespace)
            followed.onRoomChange = { [weak followed] room, exists in
                onChange(room, exists, followed?.sockets[room] != nil)
            }
            for room in followed.rooms.keys { onChange(room, true, followed.sockets[room] != nil) }
            return
        }
        let changes = NIOLoopBound(RoomChanges(shards: self, namespace: namespace, onChange: onChange), eventLoop: eventLoop)
        let home = eventLoop
        forEach { server in
            let followed = server.namespace(named: namespace)
            let onHome = server.eventLoop === home
            let report: @Sendable (String, Bool, Bool) -> Void = { room, exists, isPrivate in
                if onHome {
                    changes.value.changed(room, exists: exists, isPrivate: isPrivate)
                } else {
                    home.execute { changes.value.changed(room, exists: exists, isPrivate: isPrivate) }
                }
            }
            followed.onRoomChange = { [weak followed] room, exists in
                report(room, exists, followed?.sockets[room] != nil)
            }
            for room in followed.rooms.keys { report(room, true, followed.sockets[room] != nil) }
        }
    }

    /// Whether this node may have a member of `room`, so that a message for it is worth
    /// decoding. On a node of several shards, always: a join just handed to a shard (by another
    /// node's request, say, followed at once by an emit to the room) is not known here until
    /// that shard reports back, so the shards decide and find no member where there is none.
    func holdsRoom(_ room: String, namespace: String) -> Bool {
        guard servers.count == 1 else { return true }
        return home.namespaces[namespace]?.hasMembers(room) ?? false
    }

    /// A shard's room got its first member there (`exists`) or lost its last; returns whether
    /// that changed the node's rooms.
    fileprivate func shardRoomChanged(_ room: String, exists: Bool, namespace: String) -> Bool {
        var holders = roomHolders[namespace, default: [:]]
        defer { roomHolders[namespace] = holders }
        if exists {
            holders[room, default: 0] += 1
            return holders[room] == 1
        }
        guard let count = holders[room] else { return false }
        holders[room] = count > 1 ? count - 1 : nil
        return count == 1
    }
}

/// The results of one `gather`, collected on the home loop.
private final class Gathering<Value> {
    private var results: [Value?]
    private var remaining: Int
    private let completion: ([Value]) -> Void

    init(count: Int, completion: @escaping ([Value]) -> Void) {
        self.results = Array(repeating: nil, count: count)
        self.remaining = count
        self.completion = completion
    }

    func receive(_ result: Value, at index: Int) {
        results[index] = result
        remaining -= 1
        if remaining == 0 { completion(results.map { $0! }) }
    }
}

/// The room changes of one followed namespace over every shard, on the home loop.
private final class RoomChanges {
    private weak var shards: NodeShards?
    private let namespace: String
    private let onChange: (String, Bool, Bool) -> Void

    init(shards: NodeShards, namespace: String, onChange: @escaping (String, Bool, Bool) -> Void) {
        self.shards = shards
        self.namespace = namespace
        self.onChange = onChange
    }

    func changed(_ room: String, exists: Bool, isPrivate: Bool) {
        guard let shards, shards.shardRoomChanged(room, exists: exists, namespace: namespace) else { return }
        onChange(room, exists, isPrivate)
    }
}

/// The answers to one broadcast with acks over several shards, on the home loop.
private final class AckCollector {
    private var counted: ((Int) -> Void)?
    private let onAck: (String, [JSONValue]) -> Void
    /// Answers that came before every shard had counted.
    private var early: [(socketID: String, args: [JSONValue])] = []
    /// Each asking shard's way to stop its answers; nil until every shard has counted.
    private var cancels: [NIOLoopBound<() -> Void>]?
    private var isCancelled = false

    init(counted: @escaping (Int) -> Void, onAck: @escaping (String, [JSONValue]) -> Void) {
        self.counted = counted
        self.onAck = onAck
    }

    func answer(_ socketID: String, _ args: [JSONValue]) {
        guard !isCancelled else { return }
        if counted != nil {
            early.append((socketID, args))
        } else {
            onAck(socketID, args)
        }
    }

    func allCounted(_ total: Int, cancels: [NIOLoopBound<() -> Void>]) {
        self.cancels = cancels
        guard !isCancelled else { return cancelShards() }
        let counted = self.counted
        self.counted = nil
        counted?(total)
        // An answer may finish the request, which cancels: the rest are not heard.
        while !isCancelled, !early.isEmpty {
            let answer = early.removeFirst()
            onAck(answer.socketID, answer.args)
        }
    }

    func cancel() {
        guard !isCancelled else { return }
        isCancelled = true
        early.removeAll()
        cancelShards()
    }

    private func cancelShards() {
        for cancel in cancels ?? [] {
            cancel.eventLoop.execute { cancel.value() }
        }
        cancels = []
    }
}

/// A shard's way to the node's session store, on the shard's loop: each call is handed to the
/// home loop, each answer back. The home loop answers a restore before it hands the shard any
/// broadcast it keeps afterwards, so the shard sees the missed packets, then the new ones.
private final class ShardSessionRecovery: SessionRecovery {
    private let shard: Int
    private let loop: EventLoop
    private let shards: NIOLoopBound<NodeShards>

    init(shard: Int, loop: EventLoop, shards: NIOLoopBound<NodeShards>) {
        self.shard = shard
        self.loop = loop
        self.shards = shards
    }

    func persist(_ session: PersistedSession) {
        onHome { $0.persist(session) }
    }

    func lookUp(pid: String, offset: String, namespace: String, completion: @escaping (String?) -> Void) {
        let answer = answering(completion)
        onHome { $0.lookUp(pid: pid, offset: offset, namespace: namespace, completion: answer) }
    }

    func restore(pid: String, offset: String, namespace: String, completion: @escaping (RestoredSession?) -> Void) {
        let answer = answering(completion)
        let shard = self.shard
        onHome { $0.restore(pid: pid, offset: offset, namespace: namespace, for: shard, completion: answer) }
    }

    func restoredSocketLeft(sid: String) {
        let shard = self.shard
        onHome { $0.restoredSocketLeft(sid: sid, shard: shard) }
    }

    private func onHome(_ work: @escaping @Sendable (NodeShards) -> Void) {
        let shards = self.shards
        if shards.eventLoop === loop {
            work(shards.value)
        } else {
            shards.eventLoop.execute { work(shards.value) }
        }
    }

    /// `completion`, callable on the home loop, run on this shard's loop.
    private func answering<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        let bound = NIOLoopBound(completion, eventLoop: loop)
        let loop = self.loop
        let onHome = shards.eventLoop === loop
        return { value in
            if onHome {
                bound.value(value)
            } else {
                loop.execute { bound.value(value) }
            }
        }
    }
}
