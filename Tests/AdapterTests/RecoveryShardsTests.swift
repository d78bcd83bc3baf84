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

/// Connection state recovery on a node of several shards: a client whose new connection lands
/// on another shard than its sid names gets its socket back there, and everything aimed at the
/// sid reaches that shard. Each shard is a real Socket.IO server with embedded WebSocket
/// clients; a hand-off waits in its loop's queue until the test runs the loops.
final class RecoveryShardsTests: XCTestCase {
    private var engines: [TestServer] = []
    private var shards: NodeShards!
    private let sink = AcceptingSink()

    override func setUp() {
        var logger = Logger(label: "recovery-shards-test")
        logger.logLevel = .critical
        engines = []
        var servers: [SocketIOServer] = []
        for index in 0..<3 {
            let shard = LoopShard(index: index, count: 3)
            let engine = TestServer {
                $0.pingInterval = .seconds(3600)
                $0.pingTimeout = .seconds(3600)
                $0.shard = shard
            }
            var configuration = SocketIOServerConfiguration()
            configuration.shard = shard
            configuration.recovery = RecoveryConfiguration(window: .seconds(60))
            let server = SocketIOServer(configuration: configuration, eventLoop: engine.loop, logger: logger)
            server.sink = sink
            engine.server.delegate = server
            engines.append(engine)
            servers.append(server)
        }
        shards = NodeShards(servers: servers.map { NIOLoopBound($0, eventLoop: $0.eventLoop) })
        shards.enableRecovery(store: MemorySessionStore(window: .seconds(60), maxPackets: 100, eventLoop: engines[0].loop))
        runLoops()
    }

    private func runLoops() {
        for _ in 0..<3 {
            for engine in engines { engine.loop.run() }
        }
    }

    /// Sends `connect` on a new WebSocket session of `shard`; returns the client and every
    /// Socket.IO packet it got up to and including the CONNECT reply.
    private func connect(onShard shard: Int, _ connect: String = "40") throws -> (TestConnection, [String]) {
        let (connection, _) = try engines[shard].openWebSocketSession()
        try connection.sendText(connect)
        runLoops()
        return (connection, try connection.readTexts().filter { $0 != "2" })
    }

    private func reply(_ texts: [String]) throws -> [String: String] {
        let text = try XCTUnwrap(texts.last { $0.hasPrefix("40") })
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8.dropFirst(2))) as? [String: String])
    }

    private func emit(_ n: Int, to rooms: Set<String> = []) {
        shards.broadcast(
            SocketIOPacket(type: .event, namespace: "/", data: ["n", .int(Int64(n))]),
            options: BroadcastOptions(namespace: "/", rooms: rooms)
        )
        runLoops()
    }

    /// The event's number and offset.
    private func event(_ text: String) throws -> (Int, String) {
        let array = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8.dropFirst(2))) as? [Any])
        return (try XCTUnwrap(array[1] as? Int), try XCTUnwrap(array[2] as? String))
    }

    func testASocketRecoveredOnAnotherShardIsReachedThereByItsSid() throws {
        let (first, opened) = try connect(onShard: 1)
        let sid = try XCTUnwrap(reply(opened)["sid"])
        let pid = try XCTUnwrap(reply(opened)["pid"])
        XCTAssertEqual(LoopShard.index(of: sid, count: 3), 1)
        shards.withShard(owning: sid, { $0.socket(id: sid, namespace: "/")?.join("room") }, completion: { _ in })
        runLoops()
        emit(0, to: ["room"])
        let (_, offset) = try event(try XCTUnwrap(first.readTexts().first))

        try first.channel.close().wait()
        runLoops()
        emit(1, to: ["room"])
        emit(2, to: [sid])
        emit(3, to: ["elsewhere"])

        let (second, texts) = try connect(onShard: 2, #"40{"pid":"\#(pid)","offset":"\#(offset)"}"#)
        XCTAssertEqual(try reply(texts), ["sid": sid, "pid": pid])
        XCTAssertEqual(try texts.dropLast().map { try event($0).0 }, [1, 2], "missed, in order, before the CONNECT")
        XCTAssertEqual(shards.shardIndex(owning: sid), 2)

        // Routed by sid to shard 2, where it lives, and back in its room.
        var found: Bool?
        shards.withShard(owning: sid, { $0.socket(id: sid, namespace: "/")?.rooms.contains("room") ?? false }) { found = $0 }
        runLoops()
        XCTAssertEqual(found, true)
        emit(4, to: ["room"])
        XCTAssertEqual(try second.readTexts().map { try event($0).0 }, [4])

        // Gone again: its sid names shard 1 once more, until it comes back.
        try second.channel.close().wait()
        runLoops()
        XCTAssertEqual(shards.shardIndex(owning: sid), 1)
    }

    func testAClientRecoveredOnItsOwnShardNeedsNoRouting() throws {
        let (first, opened) = try connect(onShard: 0)
        let (sid, pid) = (try XCTUnwrap(reply(opened)["sid"]), try XCTUnwrap(reply(opened)["pid"]))
        emit(0)
        let (_, offset) = try event(try XCTUnwrap(first.readTexts().first))
        try first.channel.close().wait()
        runLoops()
        let (_, texts) = try connect(onShard: 0, #"40{"pid":"\#(pid)","offset":"\#(offset)"}"#)
        XCTAssertEqual(try reply(texts)["sid"], sid)
        XCTAssertEqual(shards.shardIndex(owning: sid), 0)
    }
}
