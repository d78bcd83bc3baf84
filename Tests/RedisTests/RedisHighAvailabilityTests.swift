import Foundation
import NIOCore
import XCTest

@testable import Redis

/// Sentinel and Cluster topologies on real redis-server processes: discovery, delivery across
/// nodes, and delivery resuming after the master in use is SIGKILLed, without a client restart.
final class RedisHighAvailabilityTests: RedisIntegrationTestCase {
    // MARK: - Sentinel

    func testSentinelDiscoversTheMasterAndFollowsAFailover() throws {
        let master = try self.makeServer()
        let replica = try self.makeServer(extraArguments: ["--replicaof", "127.0.0.1", "\(master.port)"])
        try eventually(timeout: 15, "the replica never synced") {
            try master.cli("INFO", "replication").contains("connected_slaves:1")
                && replica.cli("INFO", "replication").contains("master_link_status:up")
        }
        let sentinelConfig = """
            sentinel monitor ha 127.0.0.1 \(master.port) 2
            sentinel down-after-milliseconds ha 1000
            sentinel failover-timeout ha 3000
            sentinel parallel-syncs ha 1

            """
        let sentinels = try (0..<3).map { _ in try self.makeServer(sentinelConfig: sentinelConfig) }
        // Two sentinels must agree and one must know the replica before a failover can happen.
        for sentinel in sentinels {
            try eventually(timeout: 20, "sentinel \(sentinel.port) never saw its peers and the replica") {
                try sentinel.cli("SENTINEL", "ckquorum", "ha").hasPrefix("OK 3")
                    && sentinel.cli("SENTINEL", "replicas", "ha").contains("\(replica.port)")
            }
        }
        // The first sentinel listed is down: the client must ask the next ones.
        let down = try RedisServerProcess()
        let configuration = RedisClientConfiguration(
            url: try RedisURL("redis://localhost"),
            topology: .sentinel(masterName: "ha", sentinels: [down.endpoint] + sentinels.map(\.endpoint)),
            minBackoff: .milliseconds(10),
            maxBackoff: .milliseconds(200),
            connectTimeout: .seconds(2)
        )
        let (client, inbox) = try self.makeClient(configuration: configuration)
        try self.waitUntilConnected(client)
        XCTAssertEqual(try self.run(client) { $0.currentNode }, master.endpoint)
        try self.subscribe(client, "ha", into: inbox)
        self.waitForSubscribers(client, "ha", count: 1)
        try self.publish(client, "ha", ["before"])
        try eventually { try self.messages(inbox) == ["ha:before"] }

        let (gap, sent) = try self.killAndMeasure(master, publisher: client, inbox: inbox)
        print("Sentinel failover: \(String(format: "%.2f", gap)) s from SIGKILL of the master to the first delivery; \(sent) publishes made meanwhile")
        XCTAssertEqual(try self.run(client) { $0.currentNode }, replica.endpoint)
        XCTAssertEqual(try replica.cli("ROLE").split(separator: "\n").first, "master")
        // The publishes made while no master was reachable waited in the outbox.
        try eventually(timeout: 10, "some publishes made during the failover never arrived") {
            Set(try self.messages(inbox)).isSuperset(of: (0..<sent).map { "ha:after-\($0)" })
        }
        XCTAssertEqual(self.logs.count(.notice, "Redis failover complete"), 1)
        XCTAssertGreaterThanOrEqual(self.logs.count(.warning, "Redis Sentinel promoted a new master; moving to it"), 1)
    }

    func testSentinelThatNamesNoMasterIsRetriedWithoutHanging() throws {
        let sentinel = try self.makeServer(sentinelConfig: "\n")
        let configuration = RedisClientConfiguration(
            url: try RedisURL("redis://localhost"),
            topology: .sentinel(masterName: "unknown", sentinels: [sentinel.endpoint]),
            minBackoff: .milliseconds(10),
            maxBackoff: .milliseconds(100),
            connectTimeout: .seconds(1)
        )
        let (client, _) = try self.makeClient(configuration: configuration)
        try self.publish(client, "ha", ["queued"])
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertFalse(try self.run(client) { $0.isConnected })
        XCTAssertEqual(try self.run(client) { $0.outboxCount }, 1)
        XCTAssertTrue(self.logs.lines.contains { $0.message == "cannot connect to Redis; retrying in the background" && "\($0.metadata["error"] ?? "")".contains("no master found") })
    }

    /// A Sentinel with its own `requirepass`: the client logs in to it with the Sentinel
    /// password, and to the master (which has none here) without it.
    private func sentinelWithPassword() throws -> (master: RedisServerProcess, sentinel: RedisServerProcess) {
        let master = try self.makeServer()
        let sentinel = try self.makeServer(password: "sentinel-secret", sentinelConfig: """
            sentinel monitor ha 127.0.0.1 \(master.port) 1

            """)
        try eventually(timeout: 10, "the sentinel never named the master") {
            try sentinel.cli("SENTINEL", "get-master-addr-by-name", "ha").hasSuffix("\(master.port)")
        }
        return (master, sentinel)
    }

    private func sentinelConfiguration(_ sentinel: RedisServerProcess, password: String?) throws -> RedisClientConfiguration {
        RedisClientConfiguration(
            url: try RedisURL("redis://localhost"),
            topology: .sentinel(masterName: "ha", sentinels: [sentinel.endpoint]),
            sentinelPassword: password,
            minBackoff: .milliseconds(10), maxBackoff: .milliseconds(100), connectTimeout: .seconds(1)
        )
    }

    func testSentinelWithAPasswordIsAskedWithIt() throws {
        let (master, sentinel) = try self.sentinelWithPassword()
        let (client, inbox) = try self.makeClient(configuration: try self.sentinelConfiguration(sentinel, password: "sentinel-secret"))
        try self.waitUntilConnected(client)
        XCTAssertEqual(try self.run(client) { $0.currentNode }, master.endpoint)
        try self.subscribe(client, "ha", into: inbox)
        self.waitForSubscribers(client, "ha", count: 1)
        try self.publish(client, "ha", ["hello"])
        try eventually { try self.messages(inbox) == ["ha:hello"] }
        // The event link subscribed to +switch-master on the sentinel, logged in too.
        try eventually { try sentinel.cli("CLIENT", "LIST").contains(" sub=1 ") }
    }

    func testSentinelPasswordWrongOrMissingGivesAClearError() throws {
        let (_, sentinel) = try self.sentinelWithPassword()
        for (password, expected) in [("wrong", "WRONGPASS"), (nil, "NOAUTH")] as [(String?, String)] {
            let logs = LogRecorder()
            let (client, _) = try self.makeClient(configuration: try self.sentinelConfiguration(sentinel, password: password), logger: logs.logger)
            try self.publish(client, "ha", ["queued"])
            var errors: [String] = []
            eventually(timeout: 5, "no connection error naming \(expected): \(errors)") {
                errors = logs.lines.filter { $0.message == "cannot connect to Redis; retrying in the background" }.map { "\($0.metadata["error"] ?? "")" }
                return errors.contains { $0.contains(expected) && $0.contains("sentinel 127.0.0.1:\(sentinel.port)") }
            }
            XCTAssertFalse(try self.run(client) { $0.isConnected })
            XCTAssertEqual(try self.run(client) { $0.outboxCount }, 1, "the publish waits, it is not lost")
        }
    }

    // MARK: - Cluster

    func testClusterDeliversAcrossNodesSumsSubscribersAndSurvivesAMasterKill() throws {
        let nodes = try self.makeCluster()
        func cluster(_ seed: RedisServerProcess) throws -> RedisClientConfiguration {
            RedisClientConfiguration(
                url: try RedisURL("redis://localhost"),
                topology: .cluster(seeds: [seed.endpoint]),
                clusterRefreshInterval: .seconds(1),
                minBackoff: .milliseconds(10),
                maxBackoff: .milliseconds(200),
                connectTimeout: .seconds(2)
            )
        }
        let (a, inboxA) = try self.makeClient(configuration: try cluster(nodes[0]))
        let (b, inboxB) = try self.makeClient(configuration: try cluster(nodes[4]))
        // One plain subscriber on every node, so no single node's count can be the total.
        let watchers = try nodes.map { node in try self.makeClient("redis://127.0.0.1:\(node.port)") }
        for (watcher, inbox) in watchers { try self.subscribe(watcher, "ha", into: inbox) }
        try self.subscribe(a, "ha", into: inboxA)
        try self.subscribe(b, "ha", into: inboxB)
        for client in [a, b] + watchers.map(\.0) { try self.waitUntilConnected(client) }

        eventually(timeout: 10, "subscriberCount never summed the 8 subscribers") {
            (try? self.loop.flatSubmit { a.value.subscriberCount(of: "ha") }.wait()) == 8
        }
        let perNode = try nodes.map { Int(try $0.cli("PUBSUB", "NUMSUB", "ha").split(separator: "\n").last ?? "") ?? -1 }
        XCTAssertEqual(perNode.reduce(0, +), 8, "\(perNode)")
        XCTAssertLessThan(perNode.max() ?? 0, 8)
        // Counting asks every node over links kept open: 20 counts of 6 nodes open no 120
        // connections (only the node list, read once a second, opens one now and then).
        func connectionsReceived() throws -> Int {
            try nodes.reduce(0) { total, node in
                let stats = try node.cli("INFO", "stats").split(whereSeparator: \.isNewline)
                let line = stats.first { $0.hasPrefix("total_connections_received:") } ?? ""
                return total + (Int(line.split(separator: ":").last ?? "") ?? 0)
            }
        }
        let before = try connectionsReceived()
        for _ in 0..<20 {
            XCTAssertEqual(try self.loop.flatSubmit { a.value.subscriberCount(of: "ha") }.wait(), 8)
        }
        // redis-cli's own INFO connections count too: one per node for each reading.
        XCTAssertLessThanOrEqual(try connectionsReceived() - before, nodes.count + 3)

        try self.publish(a, "ha", ["from-a"])
        try self.publish(b, "ha", ["from-b"])
        for inbox in [inboxA, inboxB] + watchers.map(\.1) {
            try eventually { Set(try self.messages(inbox)) == ["ha:from-a", "ha:from-b"] }
        }

        // Kill the master A uses; A moves to another node and the killed node's replica takes over.
        let used = try XCTUnwrap(try self.run(a) { $0.currentNode })
        let victim = try XCTUnwrap(nodes.first { $0.endpoint == used })
        XCTAssertTrue(try victim.cli("ROLE").hasPrefix("master"), "A should prefer a master")
        let (gap, sent) = try self.killAndMeasure(victim, publisher: b, inbox: inboxA)
        print("Cluster failover: \(String(format: "%.2f", gap)) s from SIGKILL of the master in use to the first delivery; \(sent) publishes made meanwhile")
        XCTAssertNotEqual(try self.run(a) { $0.currentNode }, used)
        let survivor = try XCTUnwrap(nodes.first { $0 !== victim })
        var layout = ""
        try eventually(timeout: 15, "the killed master's replica never took over: \(layout)") {
            layout = try survivor.cli("CLUSTER", "NODES")
            let lines = layout.split(separator: "\n")
            let masters = lines.filter { $0.contains("master") && !$0.contains("fail") }
            return masters.count == 3 && lines.contains { $0.contains("\(victim.port)@") && $0.contains("fail") }
        }
        try self.publish(a, "ha", ["after-failover"])
        try eventually { try self.messages(inboxB).contains("ha:after-failover") }
        // The killed node's watcher is gone; every other subscriber is still counted.
        eventually(timeout: 10, "subscriberCount never settled at 7") {
            (try? self.loop.flatSubmit { a.value.subscriberCount(of: "ha") }.wait()) == 7
        }
    }

    // MARK: - Helpers

    /// Six cluster nodes, three masters with a replica each, all slots covered.
    private func makeCluster() throws -> [RedisServerProcess] {
        var ports: [Int] = []
        while ports.count < 6 {
            let port = try RedisServerProcess.freeClusterPort()
            if !ports.contains(port) { ports.append(port) }
        }
        let nodes = try ports.map { port in
            try self.makeServer(port: port, extraArguments: [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
            ])
        }
        let created = try nodes[0].cli(
            ["--cluster", "create"] + ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "1", "--cluster-yes"]
        )
        XCTAssertTrue(created.contains("All 16384 slots covered"), created)
        for node in nodes {
            try eventually(timeout: 20, "cluster node \(node.port) never reached state ok") {
                let info = try node.cli("CLUSTER", "INFO")
                return info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
            }
            // A replica that never synced counts as too stale to take over.
            try eventually(timeout: 20, "cluster node \(node.port) never finished its replication sync") {
                let replication = try node.cli("INFO", "replication")
                return replication.contains("role:master") || replication.contains("master_link_status:up")
            }
        }
        return nodes
    }

    /// SIGKILLs `server`, then publishes `after-N` every 50 ms on `publisher` until `inbox` gets
    /// one of them; returns the seconds from the kill to that delivery, and how many were sent.
    private func killAndMeasure(
        _ server: RedisServerProcess,
        publisher: NIOLoopBound<RedisClient>,
        inbox: NIOLoopBound<Inbox>
    ) throws -> (gap: TimeInterval, sent: Int) {
        let killed = Date()
        server.kill()
        var sent = 0
        while Date().timeIntervalSince(killed) < 30 {
            try self.publish(publisher, "ha", ["after-\(sent)"])
            sent += 1
            if try self.messages(inbox).contains(where: { $0.hasPrefix("ha:after-") }) {
                return (Date().timeIntervalSince(killed), sent)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("no delivery within 30 s of the kill")
        return (.infinity, sent)
    }
}

extension RedisServerProcess {
    var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: self.port) }
}
