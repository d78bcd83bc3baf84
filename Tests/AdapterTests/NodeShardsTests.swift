import EngineIO
import EngineIOTestSupport
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import SidecastJSON
import SocketIO
import XCTest

@testable import Adapter

/// A node on several event loops under the cluster adapter: each shard a real Socket.IO server
/// with real (embedded) WebSocket clients on its own loop. What the adapter hands a shard waits
/// in that loop's queue until the test runs the loop, as a hand-off to another thread would;
/// requests gather over the shards, then over the other nodes, and the node still counts once.
final class NodeShardsTests: XCTestCase {
    private var bus: FakeBus!

    override func setUp() {
        bus = FakeBus()
    }

    func testFetchSocketsGathersEveryShardThenEveryNode() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus)
        let b = FakeNode(uid: "B", bus: bus, carriesAllRooms: false, followsRooms: false)
        let local = try (0..<3).map { try a.connect(onShard: $0) }
        let remote = try b.connect()
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        XCTAssertNil(result, "shards 1 and 2 have not run yet")
        settle(a)
        XCTAssertEqual(Set(try XCTUnwrap(result).get().map(\.id)), Set(local + [remote]))
        XCTAssertEqual(bus.delivered(to: "B", kind: "fetchSockets"), 1, "one request for the node, not one per shard")
    }

    func testFetchSocketsOfTheNodeAloneNeedsNoOtherNode() throws {
        let a = ShardedNode(uid: "A", shards: 4, bus: bus)
        let ids = try [0, 1, 1, 3].map { try a.connect(onShard: $0) }
        a.server(2).socket(id: try a.connect(onShard: 2), namespace: "/")?.join("blue")
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/", except: ["blue"])) { result = $0 }
        settle(a)
        XCTAssertEqual(Set(try XCTUnwrap(result).get().map(\.id)), Set(ids), "the selector applies on every shard")
        XCTAssertEqual(bus.published(by: "A"), 0)
    }

    func testAllRoomsIsTheUnionOverShardsAndNodes() throws {
        let a = ShardedNode(uid: "A", shards: 2, bus: bus, carriesAllRooms: true)
        let b = FakeNode(uid: "B", bus: bus, carriesAllRooms: true, followsRooms: false)
        let first = try a.connect(onShard: 0)
        let second = try a.connect(onShard: 1)
        a.server(1).socket(id: second, namespace: "/")?.join("red")
        let remote = try b.connect()
        b.server.socket(id: remote, namespace: "/")?.join("green")
        var result: Result<Set<String>, AdapterError>?
        a.adapter.allRooms(namespace: "/") { result = $0 }
        settle(a)
        XCTAssertEqual(try XCTUnwrap(result).get(), [first, second, remote, "red", "green"])
    }

    func testABroadcastReachesEveryClientOfEveryShardOnce() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus)
        let b = FakeNode(uid: "B", bus: bus, carriesAllRooms: false, followsRooms: false)
        let ids = try (0..<6).map { try a.connect(onShard: $0 % 3) }
        let remote = try b.connect()
        a.adapter.broadcast(event("hello"), options: BroadcastOptions(namespace: "/"))
        settle(a)
        for id in ids {
            XCTAssertEqual(try a.clients[id]?.events(), [#"42["hello"]"#], id)
        }
        XCTAssertEqual(try b.clients[remote]?.events(), [#"42["hello"]"#])
    }

    /// Two emits the adapter issues one after the other reach a socket of another shard in
    /// that order, whichever loop runs first.
    func testEmitsToOneSocketOfAnotherShardKeepTheirOrder() throws {
        let a = ShardedNode(uid: "A", shards: 2, bus: bus)
        let id = try a.connect(onShard: 1)
        for n in 0..<50 {
            a.adapter.broadcast(event("n\(n)"), options: BroadcastOptions(namespace: "/", rooms: [id]))
        }
        settle(a)
        XCTAssertEqual(try a.clients[id]?.events(), (0..<50).map { #"42["n\#($0)"]"# })
    }

    func testJoinWithASelectorReachesEveryShard() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus)
        let ids = try (0..<3).map { try a.connect(onShard: $0) }
        a.adapter.addSockets(BroadcastOptions(namespace: "/", except: [ids[1]]), rooms: ["room"])
        settle(a)
        XCTAssertEqual(a.server(0).socket(id: ids[0], namespace: "/")?.rooms.contains("room"), true)
        XCTAssertEqual(a.server(1).socket(id: ids[1], namespace: "/")?.rooms.contains("room"), false)
        XCTAssertEqual(a.server(2).socket(id: ids[2], namespace: "/")?.rooms.contains("room"), true)
        a.adapter.removeSockets(BroadcastOptions(namespace: "/"), rooms: ["room"])
        a.adapter.disconnectSockets(BroadcastOptions(namespace: "/", rooms: [ids[2]]), close: false)
        settle(a)
        XCTAssertEqual(a.server(2).socket(id: ids[2], namespace: "/")?.rooms.contains("room"), nil, "disconnected")
        XCTAssertEqual(a.server(0).socket(id: ids[0], namespace: "/")?.rooms.contains("room"), false)
    }

    func testBroadcastWithAckCountsEveryShardAndCollectsEveryAnswer() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus)
        let b = FakeNode(uid: "B", bus: bus, carriesAllRooms: false, followsRooms: false)
        let ids = try [0, 1, 2, 2].map { try a.connect(onShard: $0) }
        _ = try b.connect()
        var result: BroadcastAckResult?
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { result = $0 }
        settle(a)
        // The shards answer before the other node does: the request waits for B still.
        try a.answerAcks(with: "a")
        settle(a, deliveringBus: false)
        XCTAssertNil(result)
        bus.deliverAll()
        try b.answerAcks(with: "b")
        settle(a)
        let done = try XCTUnwrap(result)
        XCTAssertFalse(done.timedOut)
        XCTAssertEqual(done.expected, 5)
        XCTAssertEqual(Set(done.responses.compactMap(\.socketID)), Set(ids))
        XCTAssertEqual(done.responses.filter { $0.socketID == nil }.map(\.args), [["b"]])
    }

    /// Another node's broadcast with acks is answered once for the node: one client count,
    /// over every shard, published before any answer, then one answer per socket.
    func testAnotherNodesBroadcastWithAckGetsOneCountForTheNode() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus)
        let b = FakeNode(uid: "B", bus: bus, carriesAllRooms: false, followsRooms: false)
        _ = try [0, 1, 2].map { try a.connect(onShard: $0) }
        var result: BroadcastAckResult?
        b.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { result = $0 }
        bus.deliverAll()
        // Shard 2 runs and its client answers, and the home loop hears both, before shard 1
        // has counted.
        a.loop(2).run()
        try a.answerAcks(with: "early", onShard: 2)
        a.loop(2).run()
        a.loop(0).run()
        bus.deliverAll()
        XCTAssertEqual(bus.delivered(to: "B", kind: "broadcastAck"), 0, "no answer before the node's count")
        settle(a)
        XCTAssertEqual(bus.delivered(to: "B", kind: "broadcastClientCount"), 1)
        XCTAssertEqual(bus.delivered(to: "B", kind: "broadcastAck"), 1)
        try a.answerAcks(with: "late")
        settle(a)
        let done = try XCTUnwrap(result)
        XCTAssertFalse(done.timedOut)
        XCTAssertEqual(done.expected, 3)
        XCTAssertEqual(done.responses.map(\.args).sorted { "\($0)" < "\($1)" }, [["early"], ["late"], ["late"]])
    }

    func testAnotherNodesFetchGetsEveryShardsSocketsInOneAnswer() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus)
        let b = FakeNode(uid: "B", bus: bus, carriesAllRooms: false, followsRooms: false)
        let ids = try [0, 1, 2].map { try a.connect(onShard: $0) }
        var result: Result<[SocketDetails], AdapterError>?
        b.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        settle(a)
        XCTAssertEqual(Set(try XCTUnwrap(result).get().map(\.id)), Set(ids))
        XCTAssertEqual(bus.delivered(to: "B", kind: "fetchSocketsResponse"), 1)
    }

    /// With room channels, a room exists on the node while any shard has a member: created
    /// with the first shard's member, deleted with the last shard's.
    func testARoomExistsOnTheNodeWhileAnyShardHoldsIt() throws {
        let a = ShardedNode(uid: "A", shards: 3, bus: bus, followsRooms: true)
        let first = try a.connect(onShard: 1)
        let second = try a.connect(onShard: 2)
        settle(a)
        a.transport.clearRoomEvents()
        a.server(1).socket(id: first, namespace: "/")?.join("blue")
        a.server(2).socket(id: second, namespace: "/")?.join("blue")
        settle(a)
        XCTAssertEqual(a.transport.roomEvents, ["+blue public"])
        a.server(1).socket(id: first, namespace: "/")?.leave("blue")
        settle(a)
        XCTAssertEqual(a.transport.roomEvents, ["+blue public"], "shard 2 still holds it")
        a.server(2).socket(id: second, namespace: "/")?.leave("blue")
        settle(a)
        XCTAssertEqual(a.transport.roomEvents, ["+blue public", "-blue"])
    }

    /// A message for a room is decoded on a node of several shards even when no shard is known
    /// to hold the room: a join handed to a shard may not have come back yet.
    func testEveryRoomMayBeHeldOnANodeOfSeveralShards() throws {
        let a = ShardedNode(uid: "A", shards: 2, bus: bus)
        XCTAssertTrue(a.adapter.transport(holdsRoom: "nobody", namespace: "/"))
        let one = FakeNode(uid: "B", bus: bus, carriesAllRooms: false, followsRooms: false)
        XCTAssertFalse(one.adapter.transport(holdsRoom: "nobody", namespace: "/"), "one shard knows its rooms")
    }

    // MARK: Helpers

    private func event(_ name: String) -> SocketIOPacket {
        SocketIOPacket(type: .event, namespace: "/", data: [.string(name)])
    }

    /// Runs every shard's loop and the bus until nothing moves.
    private func settle(_ node: ShardedNode, deliveringBus: Bool = true) {
        for _ in 0..<6 {
            node.runLoops()
            if deliveringBus { bus.deliverAll() }
        }
    }
}

/// A node of several shards, each a Socket.IO server on its own embedded loop, under one
/// cluster adapter on the first shard's loop.
final class ShardedNode {
    let engines: [TestServer]
    let servers: [SocketIOServer]
    let adapter: ClusterAdapter
    let transport: FakeTransport
    private let sink = AcceptingSink()
    private(set) var clients: [String: FakeClient] = [:]
    private var shardOf: [String: Int] = [:]
    private var answered: Set<String> = []

    init(uid: String, shards: Int, bus: FakeBus, carriesAllRooms: Bool = false, followsRooms: Bool = false) {
        var logger = Logger(label: "node-shards-test")
        logger.logLevel = .critical
        var engines: [TestServer] = []
        var servers: [SocketIOServer] = []
        for index in 0..<shards {
            let shard = LoopShard(index: index, count: shards)
            let engine = TestServer {
                $0.pingInterval = .seconds(3600)
                $0.pingTimeout = .seconds(3600)
                $0.shard = shard
            }
            var configuration = SocketIOServerConfiguration()
            configuration.shard = shard
            let server = SocketIOServer(configuration: configuration, eventLoop: engine.loop, logger: logger)
            server.sink = sink
            engine.server.delegate = server
            engines.append(engine)
            servers.append(server)
        }
        self.engines = engines
        self.servers = servers
        transport = FakeTransport(uid: uid, bus: bus, carriesAllRooms: carriesAllRooms, followsRooms: followsRooms)
        let nodeShards = NodeShards(servers: servers.map { NIOLoopBound($0, eventLoop: $0.eventLoop) })
        adapter = ClusterAdapter(shards: nodeShards, transport: transport, uid: uid, requestsTimeout: .seconds(5), logger: logger)
        adapter.serve(namespace: "/")
    }

    func server(_ shard: Int) -> SocketIOServer { servers[shard] }
    func loop(_ shard: Int) -> EmbeddedEventLoop { engines[shard].loop }

    func runLoops() {
        for engine in engines { engine.loop.run() }
    }

    /// Connects a client to "/" on `shard` and returns its socket id, which says its shard.
    func connect(onShard shard: Int) throws -> String {
        let (connection, _) = try engines[shard].openWebSocketSession()
        try connection.sendText("40")
        let texts = try connection.readTexts()
        let text = try XCTUnwrap(texts.first { $0.hasPrefix("40") })
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8.dropFirst(2)))
        let id = try XCTUnwrap((object as? [String: Any])?["sid"] as? String)
        XCTAssertEqual(LoopShard.index(of: id, count: servers.count), shard)
        clients[id] = FakeClient(connection: connection)
        shardOf[id] = shard
        return id
    }

    /// Every client (of `shard`, if given) answers each event with an ack id it has not
    /// answered yet.
    func answerAcks(with answer: String, onShard shard: Int? = nil) throws {
        for (id, client) in clients.sorted(by: { $0.key < $1.key }) where shard == nil || shardOf[id] == shard {
            try client.read()
            for text in client.received where text.hasPrefix("42") {
                let ackID = String(text.dropFirst(2).prefix { $0.isNumber })
                guard !ackID.isEmpty, answered.insert("\(id) \(ackID)").inserted else { continue }
                try client.connection.sendText("43\(ackID)[\"\(answer)\"]")
            }
        }
    }
}
