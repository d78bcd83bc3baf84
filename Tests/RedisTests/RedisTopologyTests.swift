import Logging
import NIOEmbedded
import XCTest

@testable import Redis

final class RedisTopologyTests: XCTestCase {
    func testEndpointParsing() throws {
        XCTAssertEqual(try RedisEndpoint("10.0.0.5:26380", defaultPort: 26379), RedisEndpoint(host: "10.0.0.5", port: 26380))
        XCTAssertEqual(try RedisEndpoint("sentinel.internal", defaultPort: 26379), RedisEndpoint(host: "sentinel.internal", port: 26379))
        XCTAssertEqual(try RedisEndpoint("[::1]:7000", defaultPort: 6379), RedisEndpoint(host: "::1", port: 7000))
        XCTAssertEqual(try RedisEndpoint("[::1]:7000", defaultPort: 6379).description, "[::1]:7000")
        XCTAssertThrowsError(try RedisEndpoint(":7000", defaultPort: 6379))
        XCTAssertThrowsError(try RedisEndpoint("host:0", defaultPort: 6379))
        XCTAssertThrowsError(try RedisEndpoint("host:http", defaultPort: 6379))
    }

    func testEndpointKeepsTheCredentialsOfTheURL() throws {
        let url = RedisEndpoint(host: "10.0.0.9", port: 7001).url(loggingInAs: try RedisURL("redis://alice:pw@placeholder/3"))
        XCTAssertEqual(url.host, "10.0.0.9")
        XCTAssertEqual(url.port, 7001)
        XCTAssertEqual(url.user, "alice")
        XCTAssertEqual(url.password, "pw")
        XCTAssertEqual(url.database, 3)
    }

    func testClusterNodesParsing() {
        let text = """
            07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
            67ed 127.0.0.1:30002@40002,node-2.internal master - 0 1426238316232 2 connected 5461-10922
            292f 127.0.0.1:30003@40003 master,fail - 1426238318243 1426238318243 3 disconnected 10923-16383
            e7d1 :30001@40001 myself,master - 0 0 1 connected 0-5460
            6ec2 127.0.0.1:30005@40005 slave,fail? 67ed 0 1426238316232 5 connected
            garbage
            """
        let nodes = RedisClusterNode.parse(text, reportedBy: RedisEndpoint(host: "10.1.1.1", port: 30001))
        XCTAssertEqual(nodes, [
            RedisClusterNode(endpoint: RedisEndpoint(host: "127.0.0.1", port: 30004), isMaster: false, isFailing: false),
            RedisClusterNode(endpoint: RedisEndpoint(host: "127.0.0.1", port: 30002), isMaster: true, isFailing: false),
            RedisClusterNode(endpoint: RedisEndpoint(host: "127.0.0.1", port: 30003), isMaster: true, isFailing: true),
            RedisClusterNode(endpoint: RedisEndpoint(host: "10.1.1.1", port: 30001), isMaster: true, isFailing: false),
            RedisClusterNode(endpoint: RedisEndpoint(host: "127.0.0.1", port: 30005), isMaster: false, isFailing: true),
        ])
    }

    func testSwitchMasterEventsOfOtherSetsAreIgnored() throws {
        let discovery = RedisSentinelDiscovery(
            masterName: "ha", sentinels: [RedisEndpoint(host: "127.0.0.1", port: 26379)], credentials: try RedisURL("redis://localhost"),
            eventLoop: EmbeddedEventLoop(), timeout: .seconds(1), logger: Logger(label: "test")
        )
        XCTAssertNil(discovery.switched("other 127.0.0.1 6379 127.0.0.1 6380"))
        XCTAssertNil(discovery.switched("ha 127.0.0.1 6379"))
        let switched = try XCTUnwrap(discovery.switched("ha 127.0.0.1 6379 127.0.0.1 6380"))
        XCTAssertEqual(switched.from, RedisEndpoint(host: "127.0.0.1", port: 6379))
        XCTAssertEqual(switched.to, RedisEndpoint(host: "127.0.0.1", port: 6380))
        XCTAssertEqual(discovery.master, RedisEndpoint(host: "127.0.0.1", port: 6380))
    }
}
