import XCTest

@testable import Redis

final class RedisURLTests: XCTestCase {
    func testHostOnlyUsesTheDefaultPort() throws {
        let url = try RedisURL("redis://cache.internal")
        XCTAssertEqual(url.host, "cache.internal")
        XCTAssertEqual(url.port, 6379)
        XCTAssertNil(url.unixPath)
        XCTAssertNil(url.user)
        XCTAssertNil(url.password)
        XCTAssertNil(url.database)
    }

    func testUserPasswordPortAndDatabase() throws {
        let url = try RedisURL("redis://alice:s3cret@10.0.0.5:6380/4")
        XCTAssertEqual(url.host, "10.0.0.5")
        XCTAssertEqual(url.port, 6380)
        XCTAssertEqual(url.user, "alice")
        XCTAssertEqual(url.password, "s3cret")
        XCTAssertEqual(url.database, 4)
        XCTAssertEqual(url.description, "redis://alice:***@10.0.0.5:6380/4")
    }

    func testPasswordOnlyAndPercentEscapes() throws {
        let url = try RedisURL("redis://:p%40ss%3Aword@localhost")
        XCTAssertNil(url.user)
        XCTAssertEqual(url.password, "p@ss:word")
        XCTAssertEqual(url.host, "localhost")
        XCTAssertFalse(url.description.contains("ss"))
    }

    func testIPv6HostAndTrailingSlash() throws {
        let url = try RedisURL("redis://[::1]:7000/")
        XCTAssertEqual(url.host, "::1")
        XCTAssertEqual(url.port, 7000)
        XCTAssertNil(url.database)
        XCTAssertEqual(url.description, "redis://[::1]:7000")
    }

    func testUnixSocketWithDatabaseAndPassword() throws {
        let url = try RedisURL("unix:///var/run/redis/redis.sock?db=2&password=pw")
        XCTAssertEqual(url.unixPath, "/var/run/redis/redis.sock")
        XCTAssertNil(url.host)
        XCTAssertEqual(url.database, 2)
        XCTAssertEqual(url.password, "pw")
        XCTAssertEqual(url.description, "unix:///var/run/redis/redis.sock?db=2&password=***")
        XCTAssertEqual(try RedisURL("unix:///tmp/r.sock").unixPath, "/tmp/r.sock")
    }

    func testBadURLsGiveAReason() {
        let bad: [(String, String)] = [
            ("localhost:6379", "expected redis://"),
            ("http://localhost", "unsupported scheme 'http'"),
            ("rediss://localhost", "TLS"),
            ("redis://", "missing host"),
            ("redis://:pw@", "missing host"),
            ("redis://host:0", "port '0'"),
            ("redis://host:99999", "port '99999'"),
            ("redis://host:abc", "port 'abc'"),
            ("redis://host:", "port ''"),
            ("redis://host/db1", "database 'db1'"),
            ("redis://host/-1", "database '-1'"),
            ("redis://alice@host", "a user needs a password"),
            ("redis://host?db=1", "query strings"),
            ("redis://[::1:6379", "unterminated IPv6"),
            ("redis://:p%zzw@host", "percent escape"),
            ("unix://relative/redis.sock", "absolute socket path"),
            ("unix:///tmp/r.sock?db=x", "database 'x'"),
            ("unix:///tmp/r.sock?timeout=3", "unknown parameter 'timeout'"),
        ]
        for (text, reason) in bad {
            XCTAssertThrowsError(try RedisURL(text), text) { error in
                let description = String(describing: error)
                XCTAssertTrue(description.hasPrefix("invalid Redis URL: "), description)
                XCTAssertTrue(description.contains(reason), "\(text): \(description)")
            }
        }
    }

    func testErrorsNeverShowThePassword() {
        XCTAssertThrowsError(try RedisURL("redis://:hunter2%g@host")) { error in
            XCTAssertFalse(String(describing: error).contains("hunter2"))
        }
    }
}
