import Foundation
import Logging
import NIOCore
import NIOPosix
import XCTest

@testable import Redis

final class RedisClientIntegrationTests: RedisIntegrationTestCase {
    func testPublishSubscribeAndPatternRoundTrip() throws {
        let server = try self.makeServer()
        let (client, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.waitUntilConnected(client)
        try self.subscribe(client, "room", into: inbox)
        try self.psubscribe(client, "chat.*", into: inbox)
        self.waitForSubscribers(client, "room", count: 1)
        XCTAssertEqual(try self.send(client, "PUBSUB", "NUMPAT"), .integer(1))

        try self.publish(client, "room", ["hello", "world"])
        try self.publish(client, "chat.42", ["hi"])
        XCTAssertEqual(try server.cli("PUBLISH", "room", "from-cli"), "1")
        try eventually { try self.messages(inbox).count == 4 }
        XCTAssertEqual(try self.messages(inbox), ["room:hello", "room:world", "chat.*|chat.42:hi", "room:from-cli"])

        try self.run(client) { $0.unsubscribe("room") }
        self.waitForSubscribers(client, "room", count: 0)
        try self.run(client) { $0.punsubscribe("chat.*") }
        try eventually { try self.send(client, "PUBSUB", "NUMPAT") == .integer(0) }
        XCTAssertEqual(try self.states(inbox), [true])
    }

    func testBinaryPayloadArrivesUnchanged() throws {
        let server = try self.makeServer()
        let (client, inbox) = try self.makeClient("redis://localhost:\(server.port)")
        try self.waitUntilConnected(client)
        try self.run(client) { $0.subscribe("bin") { _, message in inbox.value.payloads.append(message) } }
        self.waitForSubscribers(client, "bin", count: 1)
        let payload = ByteBuffer(bytes: (0...255).map { UInt8($0) } + [13, 10, 0])
        try self.run(client) { $0.publish("bin", payload) }
        try eventually { try self.loop.submit { inbox.value.payloads.count }.wait() == 1 }
        XCTAssertEqual(try self.loop.submit { inbox.value.payloads }.wait(), [payload])
    }

    func testPubSubNumSubCountsSubscribersOfSeveralClients() throws {
        let server = try self.makeServer()
        let (first, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        let (second, _) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.subscribe(first, "room", into: inbox)
        try self.subscribe(second, "room", into: inbox)
        try self.subscribe(second, "other", into: inbox)
        try self.waitUntilConnected(first)
        try self.waitUntilConnected(second)
        self.waitForSubscribers(first, "room", count: 2)
        XCTAssertEqual(
            try self.send(first, "PUBSUB", "NUMSUB", "room", "other", "none"),
            .array([.bulk(ByteBuffer(string: "room")), .integer(2), .bulk(ByteBuffer(string: "other")), .integer(1), .bulk(ByteBuffer(string: "none")), .integer(0)])
        )
    }

    func testCommandRepliesIncludingErrorsAndNulls() throws {
        let server = try self.makeServer()
        let (client, _) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.waitUntilConnected(client)
        XCTAssertEqual(try self.send(client, "SET", "greeting", "hi"), .status("OK"))
        XCTAssertEqual(try self.send(client, "GET", "greeting"), .bulk(ByteBuffer(string: "hi")))
        XCTAssertEqual(try self.send(client, "GET", "missing"), .null)
        XCTAssertEqual(try self.send(client, "RPUSH", "list", "a", "b"), .integer(2))
        XCTAssertEqual(try self.send(client, "LRANGE", "list", "0", "-1"), .array([.bulk(ByteBuffer(string: "a")), .bulk(ByteBuffer(string: "b"))]))
        guard case .error(let message) = try self.send(client, "INCR", "greeting") else {
            return XCTFail("INCR on a string should be an error reply")
        }
        XCTAssertTrue(message.hasPrefix("ERR"), message)
        XCTAssertThrowsError(try self.loop.flatSubmit { client.value.send([]) }.wait()) {
            XCTAssertEqual($0 as? RedisClientError, .emptyCommand)
        }
    }

    func testAuthWithRequirepassAndWithAnACLUser() throws {
        let server = try self.makeServer(password: "s3cret")
        try server.cli("ACL", "SETUSER", "alice", "on", ">wonder land", "~*", "&*", "+@all")

        let (byPassword, _) = try self.makeClient("redis://:s3cret@127.0.0.1:\(server.port)")
        try self.waitUntilConnected(byPassword)
        XCTAssertEqual(try self.send(byPassword, "ACL", "WHOAMI"), .bulk(ByteBuffer(string: "default")))

        let (byUser, _) = try self.makeClient("redis://alice:wonder%20land@127.0.0.1:\(server.port)")
        try self.waitUntilConnected(byUser)
        XCTAssertEqual(try self.send(byUser, "ACL", "WHOAMI"), .bulk(ByteBuffer(string: "alice")))
    }

    func testWrongPasswordKeepsRetryingAndWarnsOnce() throws {
        let server = try self.makeServer(password: "s3cret")
        let logs = LogRecorder()
        let (client, _) = try self.makeClient("redis://:wrong@127.0.0.1:\(server.port)", logger: logs.logger)
        eventually { logs.count(.debug, "Redis connection attempt failed") >= 6 }
        XCTAssertFalse(try self.run(client) { $0.isConnected })
        // One warning per link for the whole outage, however many attempts failed.
        let warnings = logs.lines.filter { $0.level == .warning }
        XCTAssertEqual(warnings.count, 2, "\(warnings.map(\.message))")
        XCTAssertTrue(warnings.allSatisfy { "\($0.metadata["error"] ?? "")".contains("WRONGPASS") || "\($0.metadata["error"] ?? "")".contains("invalid") })
        XCTAssertThrowsError(try self.send(client, "PING")) {
            XCTAssertEqual($0 as? RedisClientError, .notConnected)
        }
    }

    func testSelectsTheDatabaseFromTheURL() throws {
        let server = try self.makeServer()
        let (client, _) = try self.makeClient("redis://127.0.0.1:\(server.port)/3")
        try self.waitUntilConnected(client)
        XCTAssertEqual(try self.send(client, "SET", "where", "db3"), .status("OK"))
        XCTAssertEqual(try server.cli("-n", "3", "GET", "where"), "db3")
        XCTAssertEqual(try server.cli("-n", "0", "EXISTS", "where"), "0")
    }

    func testUnixSocketURL() throws {
        let server = try self.makeServer(unixSocket: true)
        let (client, inbox) = try self.makeClient("unix://\(server.unixSocketPath)?db=2")
        try self.waitUntilConnected(client)
        XCTAssertEqual(try self.send(client, "SET", "via", "unix"), .status("OK"))
        XCTAssertEqual(try server.cli("-n", "2", "GET", "via"), "unix")
        try self.subscribe(client, "room", into: inbox)
        self.waitForSubscribers(client, "room", count: 1)
        try self.publish(client, "room", ["over a socket file"])
        try eventually { try self.messages(inbox) == ["room:over a socket file"] }
    }

    func testStartsWhileRedisIsDownThenDeliversQueuedPublishesInOrder() throws {
        let server = try self.makeServer(start: false)
        let (client, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.subscribe(client, "room", into: inbox)
        try self.psubscribe(client, "ro*", into: inbox)
        let sent = (1...50).map { "m\($0)" }
        try self.publish(client, "room", sent)
        XCTAssertEqual(try self.run(client) { $0.outboxCount }, 50)
        XCTAssertThrowsError(try self.send(client, "PING")) {
            XCTAssertEqual($0 as? RedisClientError, .notConnected)
        }
        eventually { self.logs.count(.debug, "Redis connection attempt failed") >= 6 }
        XCTAssertEqual(self.logs.count(.warning, "cannot connect to Redis; retrying in the background"), 2)

        try server.start()
        try self.waitUntilConnected(client)
        // Subscriptions are restored before the outbox is flushed, so the client hears itself.
        try eventually { try self.messages(inbox).count == 100 }
        let messages = try self.messages(inbox)
        XCTAssertEqual(messages.filter { $0.hasPrefix("room:") }, sent.map { "room:\($0)" })
        XCTAssertEqual(messages.filter { $0.hasPrefix("ro*|") }, sent.map { "ro*|room:\($0)" })
        XCTAssertEqual(try self.run(client) { $0.outboxCount }, 0)
        XCTAssertEqual(try self.run(client) { $0.droppedPublishes }, 0)
        XCTAssertEqual(self.logs.count(.info, "reconnected to Redis"), 2)
        XCTAssertEqual(try self.states(inbox), [true])
    }

    func testSurvivesRedisBeingKilledAndRestarted() throws {
        let server = try self.makeServer()
        let (client, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.subscribe(client, "room", into: inbox)
        try self.psubscribe(client, "event.*", into: inbox)
        try self.waitUntilConnected(client)
        self.waitForSubscribers(client, "room", count: 1)
        try self.publish(client, "room", ["before"])
        try eventually { try self.messages(inbox) == ["room:before"] }

        server.kill()
        try self.waitUntilConnected(client, false)
        try self.publish(client, "room", ["during-1", "during-2", "during-3"])
        try self.publish(client, "event.kill", ["during-4"])
        XCTAssertThrowsError(try self.send(client, "PING")) {
            XCTAssertEqual($0 as? RedisClientError, .notConnected)
        }
        eventually { self.logs.count(.debug, "Redis connection attempt failed") >= 4 }
        XCTAssertEqual(self.logs.count(.warning, "lost the connection to Redis; reconnecting"), 2)
        XCTAssertEqual(self.logs.count(.warning, "cannot connect to Redis; retrying in the background"), 0)

        try server.start()
        try self.waitUntilConnected(client)
        try eventually { try self.messages(inbox).count == 5 }
        try self.publish(client, "room", ["after"])
        try eventually { try self.messages(inbox).count == 6 }
        XCTAssertEqual(try self.messages(inbox), [
            "room:before", "room:during-1", "room:during-2", "room:during-3", "event.*|event.kill:during-4", "room:after",
        ])
        XCTAssertEqual(try self.states(inbox), [true, false, true])
        XCTAssertEqual(try self.send(client, "PING"), .status("PONG"))
    }

    /// Two clients subscribe the same channel, as the nodes of a cluster do; `a` publishes while
    /// Redis is down. The settle bound is long, so only the subscriber count can end the wait early.
    private func clientsSharingAChannel(_ server: RedisServerProcess) throws -> (a: NIOLoopBound<RedisClient>, b: NIOLoopBound<RedisClient>, inbox: NIOLoopBound<Inbox>) {
        func configuration() throws -> RedisClientConfiguration {
            RedisClientConfiguration(
                url: try RedisURL("redis://127.0.0.1:\(server.port)"), minBackoff: .milliseconds(10), maxBackoff: .milliseconds(200),
                connectTimeout: .seconds(2), outboxSettleDelay: .seconds(4), subscriberSampleInterval: .milliseconds(50)
            )
        }
        let (a, inboxA) = try self.makeClient(configuration: try configuration())
        let (b, inboxB) = try self.makeClient(configuration: try configuration())
        try self.subscribe(a, "room", into: inboxA)
        try self.subscribe(b, "room", into: inboxB)
        self.waitForSubscribers(a, "room", count: 2)
        // Let `a` count both subscribers at least once.
        Thread.sleep(forTimeInterval: 0.2)
        server.kill()
        try self.waitUntilConnected(a, false)
        try self.publish(a, "room", ["during-1", "during-2"])
        return (a, b, inboxB)
    }

    private func settleReports() -> [Logger.Metadata] {
        self.logs.lines.filter { $0.message == "sending publishes queued while Redis was unreachable" }.map(\.metadata)
    }

    func testBacklogGoesOutAsSoonAsTheOtherSubscriberIsBack() throws {
        let server = try self.makeServer()
        let (a, b, inbox) = try self.clientsSharingAChannel(server)
        try server.start()
        let restarted = Date()
        try eventually(timeout: 3) { try self.messages(inbox) == ["room:during-1", "room:during-2"] }
        XCTAssertLessThan(Date().timeIntervalSince(restarted), 2, "well before the 4 s bound")
        XCTAssertEqual(self.settleReports().map { $0["redis.settle-reason"] }, ["subscribers_back"])
        try self.publish(a, "room", ["after"])
        try eventually { try self.messages(inbox).last == "room:after" }
        XCTAssertTrue(try self.run(b) { $0.isConnected })
    }

    func testBacklogWaitsForTheBoundWhenTheOtherSubscriberNeverComesBack() throws {
        let server = try self.makeServer()
        let (a, b, _) = try self.clientsSharingAChannel(server)
        try self.loop.flatSubmit { b.value.shutdown() }.wait()
        // A pattern subscriber hears the backlog without being counted as the missing subscriber.
        let (watcher, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.psubscribe(watcher, "ro*", into: inbox)
        try server.start()
        try self.waitUntilConnected(a)
        try self.publish(a, "room", ["after"])
        try eventually(timeout: 8) { try self.messages(inbox) == ["ro*|room:during-1", "ro*|room:during-2", "ro*|room:after"] }
        let report = try XCTUnwrap(self.settleReports().first)
        XCTAssertEqual(report["redis.settle-reason"], "bound")
        XCTAssertGreaterThanOrEqual(Int("\(report["redis.settle-ms"] ?? "")") ?? 0, 4000)
    }

    func testOutboxOverflowDropsTheOldestAndCounts() throws {
        let server = try self.makeServer(start: false)
        let (client, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)", outboxLimit: 5)
        try self.subscribe(client, "room", into: inbox)
        try self.publish(client, "room", (1...12).map { "m\($0)" })
        XCTAssertEqual(try self.run(client) { $0.outboxCount }, 5)
        XCTAssertEqual(try self.run(client) { $0.droppedPublishes }, 7)
        XCTAssertEqual(self.logs.count(.warning, "Redis outbox is full; dropping the oldest publishes until Redis is back"), 1)

        try server.start()
        try self.waitUntilConnected(client)
        try eventually { try self.messages(inbox).count == 5 }
        XCTAssertEqual(try self.messages(inbox), ["room:m8", "room:m9", "room:m10", "room:m11", "room:m12"])
        let report = try XCTUnwrap(self.logs.lines.first { $0.message == "dropped publishes while Redis was unreachable" })
        XCTAssertEqual(report.metadata["redis.dropped"], "7")
    }

    func testShutdownDeliversWhatWasPublishedThenRefusesCommands() throws {
        let server = try self.makeServer()
        let (publisher, _) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        let (observer, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.subscribe(observer, "room", into: inbox)
        try self.waitUntilConnected(publisher)
        self.waitForSubscribers(observer, "room", count: 1)

        let sent = (1...200).map { "m\($0)" }
        try self.loop.flatSubmit {
            for message in sent {
                publisher.value.publish("room", ByteBuffer(string: message))
            }
            return publisher.value.shutdown()
        }.wait()
        try eventually { try self.messages(inbox).count == sent.count }
        XCTAssertEqual(try self.messages(inbox), sent.map { "room:\($0)" })
        XCTAssertThrowsError(try self.send(publisher, "PING")) {
            XCTAssertEqual($0 as? RedisClientError, .shutDown)
        }
        XCTAssertFalse(try self.run(publisher) { $0.isConnected })
    }

    func testPendingCommandsFailWhenRedisDies() throws {
        let server = try self.makeServer()
        let (client, _) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.waitUntilConnected(client)
        let blocked = try self.run(client) { $0.send("BLPOP", "never-filled", "0") }
        let queuedBehind = try self.run(client) { $0.send("PING") }
        eventually { (try? server.cli("CLIENT", "LIST"))?.contains("cmd=blpop") == true }
        server.kill()
        XCTAssertThrowsError(try blocked.wait()) { XCTAssertEqual($0 as? RedisClientError, .connectionClosed) }
        XCTAssertThrowsError(try queuedBehind.wait()) { XCTAssertEqual($0 as? RedisClientError, .connectionClosed) }
        try self.waitUntilConnected(client, false)
    }

    func testSilentServerTimesOutTheHandshakeAndIsRetried() throws {
        let silent = try ServerBootstrap(group: self.group)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0)
            .wait()
        defer { try? silent.close().wait() }
        let port = try XCTUnwrap(silent.localAddress?.port)
        let (client, _) = try self.makeClient("redis://:pw@127.0.0.1:\(port)", connectTimeout: .milliseconds(100))
        eventually { self.logs.count(.debug, "Redis connection attempt failed") >= 4 }
        let warnings = self.logs.lines.filter { $0.level == .warning }
        XCTAssertEqual(warnings.count, 2)
        for warning in warnings {
            XCTAssertEqual(warning.metadata["error"], "\(RedisClientError.timedOut)")
        }
        XCTAssertFalse(try self.run(client) { $0.isConnected })
    }

    func testShutdownWhileRedisIsDownCompletesAndReportsUndelivered() throws {
        let server = try self.makeServer(start: false)
        let (client, inbox) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.publish(client, "room", ["lost-1", "lost-2"])
        eventually { self.logs.count(.debug, "Redis connection attempt failed") >= 2 }
        try self.loop.flatSubmit { client.value.shutdown() }.wait()
        let report = try XCTUnwrap(self.logs.lines.first { $0.message == "Redis client shut down with undelivered publishes" })
        XCTAssertEqual(report.metadata["redis.undelivered"], "2")
        XCTAssertEqual(try self.run(client) { $0.outboxCount }, 0)
        try self.publish(client, "room", ["after-shutdown"])
        XCTAssertEqual(try self.run(client) { $0.outboxCount }, 0)

        // Nothing retries after shutdown: a server started now sees no client.
        try server.start()
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(try server.cli("CLIENT", "LIST").split(separator: "\n").count, 1)
        XCTAssertEqual(try self.states(inbox), [])
    }
}
