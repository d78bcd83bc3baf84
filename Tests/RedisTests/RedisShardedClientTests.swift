import Foundation
import NIOCore
import NIOPosix
import XCTest

@testable import Redis

/// Sharded pub/sub against one real Redis 7 server, which takes SSUBSCRIBE and SPUBLISH for any
/// channel; the cluster case runs in the Python module test_sharded.py.
final class RedisShardedClientTests: RedisIntegrationTestCase {
    private var sharded: [NIOLoopBound<RedisShardedClient>] = []

    override func tearDownWithError() throws {
        for client in self.sharded {
            try? self.loop.flatSubmit { client.value.shutdown() }.wait()
        }
        self.sharded = []
        try super.tearDownWithError()
    }

    private func makeShardedClient(
        port: Int, settleBound: TimeAmount = .milliseconds(50)
    ) throws -> (NIOLoopBound<RedisShardedClient>, NIOLoopBound<Inbox>) {
        let loop = self.loop!
        let configuration = RedisClientConfiguration(
            url: try RedisURL("redis://127.0.0.1:\(port)"),
            minBackoff: .milliseconds(10), maxBackoff: .milliseconds(200), connectTimeout: .seconds(2),
            outboxSettleDelay: settleBound, subscriberSampleInterval: .milliseconds(50)
        )
        let logger = self.logs.logger
        let (client, inbox) = try loop.submit {
            let client = try RedisShardedClient(configuration: configuration, eventLoop: loop, logger: logger)
            let inbox = NIOLoopBound(Inbox(), eventLoop: loop)
            for channel in ["{a}.one", "b.two"] {
                client.ssubscribe(channel) { name, message in inbox.value.messages.append("\(name):\(String(buffer: message))") }
            }
            client.start()
            return (NIOLoopBound(client, eventLoop: loop), inbox)
        }.wait()
        self.sharded.append(client)
        return (client, inbox)
    }

    private func received(_ inbox: NIOLoopBound<Inbox>) throws -> [String] {
        try self.loop.submit { inbox.value.messages }.wait()
    }

    private func connected(_ client: NIOLoopBound<RedisShardedClient>) throws -> Bool {
        try self.loop.submit { client.value.isConnected }.wait()
    }

    func testShardChannelsRoundTripAndSurviveARestart() throws {
        let server = try self.makeServer()
        let (client, inbox) = try self.makeShardedClient(port: server.port)
        try eventually { try self.connected(client) }
        XCTAssertEqual(try server.cli("PUBSUB", "SHARDNUMSUB", "{a}.one"), "{a}.one\n1")
        try self.loop.submit {
            client.value.spublish("{a}.one", ByteBuffer(string: "x"))
            client.value.spublish("b.two", ByteBuffer(string: "y"))
        }.wait()
        XCTAssertEqual(try server.cli("SPUBLISH", "b.two", "from-cli"), "1")
        try eventually { try self.received(inbox).count == 3 }
        XCTAssertEqual(try self.received(inbox), ["{a}.one:x", "b.two:y", "b.two:from-cli"])

        server.kill()
        try eventually { try !self.connected(client) }
        try self.loop.submit { client.value.spublish("{a}.one", ByteBuffer(string: "queued")) }.wait()
        XCTAssertEqual(try self.loop.submit { client.value.outboxCount }.wait(), 1)
        try server.start()
        try eventually { try self.received(inbox).last == "{a}.one:queued" }
        XCTAssertEqual(try self.loop.submit { client.value.outboxCount }.wait(), 0)

        try self.loop.submit { client.value.sunsubscribe("b.two") }.wait()
        try eventually { try server.cli("PUBSUB", "SHARDNUMSUB", "b.two") == "b.two\n0" }
    }

    /// The shard's backlog waits for the other client's SSUBSCRIBEs, counted with
    /// SHARDNUMSUB, not for the (long) settle bound.
    func testShardBacklogGoesOutOnceTheOtherSubscriberIsBack() throws {
        let server = try self.makeServer()
        let (a, _) = try self.makeShardedClient(port: server.port, settleBound: .seconds(4))
        let (b, inbox) = try self.makeShardedClient(port: server.port, settleBound: .seconds(4))
        try eventually { try self.connected(a) && self.connected(b) }
        try eventually { try server.cli("PUBSUB", "SHARDNUMSUB", "b.two") == "b.two\n2" }
        Thread.sleep(forTimeInterval: 0.2)
        server.kill()
        try eventually { try !self.connected(a) }
        try self.loop.submit {
            a.value.spublish("b.two", ByteBuffer(string: "during-1"))
            a.value.spublish("b.two", ByteBuffer(string: "during-2"))
        }.wait()
        try server.start()
        let restarted = Date()
        try eventually(timeout: 3) { try self.received(inbox) == ["b.two:during-1", "b.two:during-2"] }
        XCTAssertLessThan(Date().timeIntervalSince(restarted), 2, "well before the 4 s bound")
        let reasons = self.logs.lines.filter { $0.message == "sending publishes queued while Redis was unreachable" }
            .map { "\($0.metadata["redis.settle-reason"] ?? "")" }
        XCTAssertEqual(reasons, ["subscribers_back"])
    }

    private func shardSubscribers(_ client: NIOLoopBound<RedisShardedClient>, _ channel: String) throws -> Int {
        try self.loop.flatSubmit { client.value.shardSubscriberCount(of: channel) }.wait()
    }

    func testShardSubscriberCountAsksTheChannelsMaster() throws {
        let server = try self.makeServer()
        let (first, _) = try self.makeShardedClient(port: server.port)
        try eventually { try self.connected(first) }
        XCTAssertEqual(try self.shardSubscribers(first, "{a}.one"), 1)
        XCTAssertEqual(try self.shardSubscribers(first, "unsubscribed"), 0)

        let (second, _) = try self.makeShardedClient(port: server.port)
        try eventually { try self.connected(second) }
        XCTAssertEqual(try self.shardSubscribers(first, "{a}.one"), 2)
        try self.loop.submit { second.value.sunsubscribe("{a}.one") }.wait()
        try eventually { try self.shardSubscribers(first, "{a}.one") == 1 }

        server.kill()
        try eventually { try !self.connected(first) }
        XCTAssertThrowsError(try self.shardSubscribers(first, "{a}.one"))
    }

    func testSentinelTopologyIsRefused() throws {
        let configuration = RedisClientConfiguration(
            url: try RedisURL("redis://localhost"),
            topology: .sentinel(masterName: "m", sentinels: [RedisEndpoint(host: "localhost", port: 26379)])
        )
        XCTAssertThrowsError(try RedisShardedClient(configuration: configuration, eventLoop: self.loop, logger: self.logs.logger))
    }
}
