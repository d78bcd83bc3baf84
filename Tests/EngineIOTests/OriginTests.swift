import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

final class AllowedOriginsTests: XCTestCase {
    private func origins(_ list: [String]) throws -> AllowedOrigins {
        try AllowedOrigins(list)
    }

    func testNoneAllowsEveryOrigin() {
        XCTAssertTrue(AllowedOrigins.none.isEmpty)
        XCTAssertTrue(AllowedOrigins.none.allows("https://evil.example"))
    }

    func testStarAllowsAnyOrigin() throws {
        let any = try self.origins(["https://a.example", "*"])
        XCTAssertTrue(any.allows("https://evil.example"))
        XCTAssertTrue(any.allows("null"))
    }

    func testExactOriginsMatchSchemeHostAndPort() throws {
        let list = try self.origins(["https://app.example.com", "http://localhost:8080", "http://[::1]:3000"])
        XCTAssertTrue(list.allows("https://app.example.com"))
        XCTAssertTrue(list.allows("HTTPS://App.Example.COM"), "scheme and host regardless of case")
        XCTAssertTrue(list.allows("http://localhost:8080"))
        XCTAssertTrue(list.allows("http://[::1]:3000"))
        for foreign in [
            "http://app.example.com", "https://app.example.com:8443", "https://app.example.com.evil.net",
            "https://evil-app.example.com", "https://sub.app.example.com", "http://localhost", "http://localhost:8081",
            "null", "", "https://app.example.com/",
        ] {
            XCTAssertFalse(list.allows(foreign), foreign)
        }
    }

    func testWildcardMatchesSubdomainsAtAnyDepthAndNothingElse() throws {
        let list = try self.origins(["https://*.example.com"])
        XCTAssertTrue(list.allows("https://a.example.com"))
        XCTAssertTrue(list.allows("https://a.b.example.com"))
        XCTAssertTrue(list.allows("https://x-1.example.com"))
        for foreign in [
            "https://example.com", "https://example.com.evil.net", "https://evilexample.com", "https://a.evilexample.com",
            "http://a.example.com", "https://a.example.com:8443", "https://.example.com", "https://a..example.com",
            "https://a.example.com.", "https://user@a.example.com", "https://evil.net/.example.com", "https://a_b.example.com",
        ] {
            XCTAssertFalse(list.allows(foreign), foreign)
        }
        let withPort = try self.origins(["http://*.example.com:8080"])
        XCTAssertTrue(withPort.allows("http://a.example.com:8080"))
        XCTAssertFalse(withPort.allows("http://a.example.com"))
        XCTAssertFalse(withPort.allows("http://a.example.com:80"))
    }

    func testEntriesThatAreNoOriginsAreRefusedWithAReason() {
        for entry in [
            "app.example.com", "https://app.example.com/", "https://app.example.com/chat", "https://", "https://a.example:port",
            "https://a.*.example.com", "https://*example.com", "https://*.", "*.example.com", "null", "://a.example",
            "https://*.example.com/",
        ] {
            XCTAssertThrowsError(try AllowedOrigins([entry]), entry) { error in
                XCTAssertFalse((error as? AllowedOrigins.InvalidEntry)?.reason.isEmpty ?? true)
            }
        }
    }
}

/// Cross-site WebSocket hijacking: with allowed origins configured, a request whose `Origin` is
/// not one of them is refused with 403 and Engine.IO's "Forbidden" code, whatever it asks for.
final class OriginCheckTests: XCTestCase {
    private func server(_ origins: [String] = ["https://good.example", "https://*.good.example"]) -> TestServer {
        TestServer { $0.allowedOrigins = try! AllowedOrigins(origins) }
    }

    private let evil = [("Origin", "https://evil.example")]

    private func assertForbidden(_ response: TestResponse?, file: StaticString = #filePath, line: UInt = #line) throws {
        let response = try XCTUnwrap(response, file: file, line: line)
        XCTAssertEqual(response.status, 403, file: file, line: line)
        XCTAssertEqual(response.header("content-type"), "application/json", file: file, line: line)
        XCTAssertEqual(response.body, #"{"code":4,"message":"Origin not allowed"}"#, file: file, line: line)
        XCTAssertNil(response.header("access-control-allow-origin"), file: file, line: line)
    }

    func testForeignOriginOnAWebSocketHandshakeIsRefused() throws {
        let test = self.server()
        let connection = try test.connect()
        try connection.send("GET", "/engine.io/?EIO=4&transport=websocket", headers: [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Origin", "https://evil.example"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ])
        try self.assertForbidden(connection.readResponse())
        XCTAssertFalse(connection.isActive, "the connection of a refused upgrade is closed")
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.opened.count, 0)
    }

    func testForeignOriginOnAPollingHandshakeIsRefused() throws {
        let test = self.server()
        try self.assertForbidden(test.connect().request("GET", "/engine.io/?EIO=4&transport=polling", headers: self.evil))
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testForeignOriginCannotUpgradeNorUseAnOpenSession() throws {
        let test = self.server()
        let sid = try test.openPollingSession()
        let upgrade = try test.connect()
        try upgrade.send("GET", "/engine.io/?EIO=4&transport=websocket&sid=\(sid)", headers: [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Origin", "https://evil.example"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ])
        try self.assertForbidden(upgrade.readResponse())
        try self.assertForbidden(test.connect().request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", headers: self.evil))
        try self.assertForbidden(test.connect().request(
            "POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: "4stolen", headers: self.evil))
        XCTAssertEqual(test.delegate.texts, [], "nothing of the refused POST reached the session")
        // The session itself is untouched: its own client polls and posts as before.
        let post = try XCTUnwrap(test.connect().request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: "4mine"))
        XCTAssertEqual(post.status, 200)
        XCTAssertEqual(test.delegate.texts, ["mine"])
        XCTAssertEqual(test.delegate.closed.count, 0)
    }

    func testAllowedOriginsAndRequestsWithoutOriginGetThrough() throws {
        let test = self.server()
        for origin in ["https://good.example", "https://a.good.example", "https://a.b.good.example"] {
            let response = try XCTUnwrap(test.connect().request(
                "GET", "/engine.io/?EIO=4&transport=polling", headers: [("Origin", origin)]))
            XCTAssertEqual(response.status, 200, origin)
            XCTAssertEqual(response.header("access-control-allow-origin"), origin)
        }
        let sid = try test.openPollingSession()
        let webSocket = try test.connect()
        try webSocket.send("GET", "/engine.io/?EIO=4&transport=websocket&sid=\(sid)", headers: [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Origin", "https://chat.good.example"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ])
        XCTAssertEqual(try webSocket.readResponse()?.status, 101)
        let (_, wsSid) = try test.openWebSocketSession()
        XCTAssertFalse(wsSid.isEmpty, "a WebSocket without Origin opens a session")
        XCTAssertEqual(test.server.sessionCount, 5)
    }

    /// The test client's requests say "Host: localhost": a page of sidecast's own origin is not
    /// cross-site, and Python's websocket-client sends the URL it connects to as `Origin`.
    func testSidecastsOwnOriginGetsThroughWithoutBeingListed() throws {
        let test = self.server()
        for origin in ["http://localhost", "https://LOCALHOST"] {
            let response = try XCTUnwrap(test.connect().request(
                "GET", "/engine.io/?EIO=4&transport=polling", headers: [("Origin", origin)]))
            XCTAssertEqual(response.status, 200, origin)
        }
        for origin in ["http://localhost:8080", "http://localhost.evil.example", "null"] {
            try self.assertForbidden(test.connect().request(
                "GET", "/engine.io/?EIO=4&transport=polling", headers: [("Origin", origin)]))
        }
    }

    func testLookalikesOfTheWildcardAreRefused() throws {
        let test = self.server()
        for origin in ["https://good.example.evil.net", "https://evilgood.example", "http://a.good.example"] {
            try self.assertForbidden(test.connect().request(
                "GET", "/engine.io/?EIO=4&transport=polling", headers: [("Origin", origin)]))
        }
    }

    func testWithoutAllowedOriginsNoOriginIsRefused() throws {
        let test = TestServer()
        let response = try XCTUnwrap(test.connect().request("GET", "/engine.io/?EIO=4&transport=polling", headers: self.evil))
        XCTAssertEqual(response.status, 200)
        let connection = try test.connect()
        try connection.send("GET", "/engine.io/?EIO=4&transport=websocket", headers: [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Origin", "https://evil.example"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ])
        XCTAssertEqual(try connection.readResponse()?.status, 101)
    }
}
