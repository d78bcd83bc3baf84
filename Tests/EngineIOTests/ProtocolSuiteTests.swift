import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

/// The cases of the official Engine.IO v4 test suite (docs/engine.io-protocol/v4-test-suite),
/// one test each, against an echo delegate.
final class ProtocolSuiteTests: XCTestCase {
    // MARK: handshake, HTTP long-polling

    func testPollingHandshakeOpensSession() throws {
        let test = TestServer()
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling&t=x"))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("content-type"), "text/plain; charset=UTF-8")
        XCTAssertEqual(response.header("cache-control"), "no-store")
        XCTAssertNil(response.header("access-control-allow-origin"))
        let open = try TestServer.openPacket(response.body)
        XCTAssertEqual(Set(open.keys), ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"])
        let sid = try XCTUnwrap(open["sid"] as? String)
        XCTAssertEqual(sid.count, RandomID.length)
        XCTAssertTrue(sid.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        XCTAssertEqual(open["upgrades"] as? [String], ["websocket"])
        XCTAssertEqual(open["pingInterval"] as? Int, 300)
        XCTAssertEqual(open["pingTimeout"] as? Int, 200)
        XCTAssertEqual(open["maxPayload"] as? Int, 1_000_000)

        XCTAssertEqual(test.server.sessionCount, 1)
        let session = try XCTUnwrap(test.delegate.opened.first)
        XCTAssertEqual(session.id, sid)
        XCTAssertEqual(session.transport, .polling)
        XCTAssertEqual(session.handshake.url, "/engine.io/?EIO=4&transport=polling&t=x")
        XCTAssertEqual(session.handshake.query, ["EIO": "4", "transport": "polling", "t": "x"])
        XCTAssertEqual(session.handshake.remoteAddress, "127.0.0.1")
        XCTAssertTrue(session.handshake.headers.contains { $0.name == "Host" && $0.value == "localhost" })
        XCTAssertFalse(session.handshake.secure)
        XCTAssertGreaterThan(session.handshake.issued, 1_600_000_000_000)
    }

    func testPollingHandshakeFailsWithInvalidEIO() throws {
        let test = TestServer()
        let connection = try test.connect()
        for uri in ["/engine.io/?transport=polling", "/engine.io/?EIO=abc&transport=polling", "/engine.io/?EIO=3&transport=polling"] {
            let response = try XCTUnwrap(connection.request("GET", uri))
            XCTAssertEqual(response.status, 400, uri)
            XCTAssertEqual(response.header("content-type"), "application/json")
            XCTAssertEqual(try TestServer.errorBody(response).code, 5, uri)
            XCTAssertEqual(try TestServer.errorBody(response).message, "Unsupported protocol version")
        }
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testPollingHandshakeFailsWithInvalidTransport() throws {
        let test = TestServer()
        let connection = try test.connect()
        for uri in ["/engine.io/?EIO=4", "/engine.io/?EIO=4&transport=abc"] {
            let response = try XCTUnwrap(connection.request("GET", uri))
            XCTAssertEqual(response.status, 400)
            XCTAssertEqual(try TestServer.errorBody(response).code, 0)
            XCTAssertEqual(try TestServer.errorBody(response).message, "Transport unknown")
        }
    }

    func testPollingHandshakeFailsWithInvalidMethod() throws {
        let test = TestServer()
        let connection = try test.connect()
        for method in ["POST", "PUT"] {
            let response = try XCTUnwrap(connection.request(method, "/engine.io/?EIO=4&transport=polling", body: ""))
            XCTAssertEqual(response.status, 400)
            XCTAssertEqual(try TestServer.errorBody(response).code, 2)
            XCTAssertEqual(try TestServer.errorBody(response).message, "Bad handshake method")
        }
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: handshake, WebSocket

    func testWebSocketHandshakeOpensSession() throws {
        let test = TestServer()
        let (connection, sid) = try test.openWebSocketSession()
        XCTAssertEqual(test.server.sessionCount, 1)
        XCTAssertEqual(test.delegate.opened.first?.id, sid)
        XCTAssertEqual(test.delegate.opened.first?.transport, .websocket)
        XCTAssertEqual(sid.count, RandomID.length)
        XCTAssertTrue(connection.isActive)
    }

    func testWebSocketOpenPacketHasNoUpgrades() throws {
        let test = TestServer()
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.upgrade("/engine.io/?EIO=4&transport=websocket"))
        XCTAssertEqual(response.status, 101)
        let open = try TestServer.openPacket(try XCTUnwrap(connection.readTexts().first))
        XCTAssertEqual(open["upgrades"] as? [String], [])
        XCTAssertEqual(open["pingInterval"] as? Int, 300)
        XCTAssertEqual(open["pingTimeout"] as? Int, 200)
        XCTAssertEqual(open["maxPayload"] as? Int, 1_000_000)
    }

    func testWebSocketHandshakeFailsWithInvalidEIO() throws {
        let test = TestServer()
        for uri in ["/engine.io/?transport=websocket", "/engine.io/?EIO=abc&transport=websocket"] {
            let connection = try test.connect()
            let response = try XCTUnwrap(connection.upgrade(uri))
            XCTAssertEqual(response.status, 400, uri)
            XCTAssertEqual(try TestServer.errorBody(response).code, 5)
        }
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testWebSocketHandshakeFailsWithInvalidTransport() throws {
        let test = TestServer()
        for uri in ["/engine.io/?EIO=4", "/engine.io/?EIO=4&transport=abc"] {
            let connection = try test.connect()
            let response = try XCTUnwrap(connection.upgrade(uri))
            XCTAssertEqual(response.status, 400, uri)
            XCTAssertEqual(try TestServer.errorBody(response).code, 0)
        }
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: message, HTTP long-polling

    func testPollingSendsAndReceivesOnePlainTextPacket() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let push = try XCTUnwrap(connection.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: "4hello"))
        XCTAssertEqual(push.status, 200)
        XCTAssertEqual(push.body, "ok")
        XCTAssertEqual(push.header("content-type"), "text/html")
        XCTAssertEqual(test.delegate.texts, ["hello"])
        let poll = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 200)
        XCTAssertEqual(poll.body, "4hello")
    }

    func testPollingSendsAndReceivesSeveralPlainTextPackets() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let push = try XCTUnwrap(connection.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)",
                                                    body: "4test1\u{1e}4test2\u{1e}4test3"))
        XCTAssertEqual(push.body, "ok")
        let poll = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.body, "4test1\u{1e}4test2\u{1e}4test3")
    }

    func testPollingSendsAndReceivesTextAndBinaryPackets() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let push = try XCTUnwrap(connection.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)",
                                                    body: "4hello\u{1e}bAQIDBA=="))
        XCTAssertEqual(push.body, "ok")
        XCTAssertEqual(test.delegate.texts, ["hello"])
        XCTAssertEqual(test.delegate.binaries, [[1, 2, 3, 4]])
        let poll = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.body, "4hello\u{1e}bAQIDBA==")
    }

    func testPollingClosesSessionUponInvalidPacketFormat() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let push = try XCTUnwrap(connection.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: "abc"))
        XCTAssertEqual(push.status, 400)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.parseError])
        let poll = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 400)
        XCTAssertEqual(try TestServer.errorBody(poll).code, 1)
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testPollingClosesSessionUponDuplicatePollRequests() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let first = try test.connect()
        let second = try test.connect()
        XCTAssertNil(try first.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        let duplicate = try XCTUnwrap(second.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)&t=burst"))
        XCTAssertEqual(duplicate.status, 400)
        let released = try XCTUnwrap(first.readResponse())
        XCTAssertEqual(released.status, 200)
        XCTAssertEqual(released.body, "1")
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        let poll = try XCTUnwrap(second.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 400)
    }

    func testPollingClosesSessionUponCancelledPollRequest() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let aborted = try test.connect()
        XCTAssertNil(try aborted.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        try aborted.channel.close().wait()
        test.loop.run()
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        let poll = try XCTUnwrap(test.connect().request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 400)
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: message, WebSocket

    func testWebSocketSendsAndReceivesPlainTextPacket() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendText("4hello")
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.textOpcode, payload: Array("4hello".utf8))])
        XCTAssertEqual(test.delegate.texts, ["hello"])
    }

    func testWebSocketSendsAndReceivesBinaryPacket() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: TestFrame.binaryOpcode, payload: [1, 2, 3, 4])
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.binaryOpcode, payload: [1, 2, 3, 4])])
        XCTAssertEqual(test.delegate.binaries, [[1, 2, 3, 4]])
    }

    func testWebSocketClosesSessionUponInvalidPacketFormat() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendText("abc")
        XCTAssertEqual(try connection.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.parseError])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: heartbeat

    func testPollingSendsPingPongPackets() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let pusher = try test.connect()
        for _ in 0..<3 {
            XCTAssertNil(try connection.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
            test.advance(by: .milliseconds(300))
            let poll = try XCTUnwrap(connection.readResponse())
            XCTAssertEqual(poll.status, 200)
            XCTAssertEqual(poll.body, "2")
            let push = try XCTUnwrap(pusher.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: "3"))
            XCTAssertEqual(push.status, 200)
            test.advance(by: .milliseconds(150))
        }
        XCTAssertEqual(test.delegate.closed.count, 0)
        XCTAssertEqual(test.server.sessionCount, 1)
    }

    func testPollingClosesSessionUponPingTimeout() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        test.advance(by: .milliseconds(300 + 200))
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.pingTimeout])
        let poll = try XCTUnwrap(test.connect().request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 400)
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testWebSocketSendsPingPongPackets() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        for _ in 0..<3 {
            test.advance(by: .milliseconds(300))
            XCTAssertEqual(try connection.readTexts(), ["2"])
            try connection.sendText("3")
            test.advance(by: .milliseconds(150))
        }
        XCTAssertTrue(connection.isActive)
        XCTAssertEqual(test.delegate.closed.count, 0)
    }

    func testWebSocketClosesSessionUponPingTimeout() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        test.advance(by: .milliseconds(300))
        XCTAssertEqual(try connection.readTexts(), ["2"])
        test.advance(by: .milliseconds(199))
        XCTAssertTrue(connection.isActive)
        test.advance(by: .milliseconds(1))
        XCTAssertEqual(try connection.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.pingTimeout])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: close

    func testPollingClientForcefullyClosesSession() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let poller = try test.connect()
        XCTAssertNil(try poller.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        let push = try XCTUnwrap(test.connect().request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: "1"))
        XCTAssertEqual(push.status, 200)
        let poll = try XCTUnwrap(poller.readResponse())
        XCTAssertEqual(poll.status, 200)
        XCTAssertEqual(poll.body, "6")
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportClose])
        let after = try XCTUnwrap(poller.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(after.status, 400)
    }

    func testWebSocketClientForcefullyClosesSession() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendText("1")
        XCTAssertEqual(try connection.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportClose])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: upgrade

    func testUpgradesFromPollingToWebSocket() throws {
        let test = TestServer()
        let poller = try test.connect()
        let sid = try test.openPollingSession(on: poller)
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        XCTAssertEqual(try webSocket.readFrames(), [], "no open packet on an upgrade")
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        let poll = try XCTUnwrap(poller.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 200)
        XCTAssertEqual(poll.body, "6")
        try webSocket.sendText("5")
        XCTAssertEqual(test.delegate.opened.first?.transport, .websocket)
        try webSocket.sendText("4hello")
        XCTAssertEqual(try webSocket.readTexts(), ["4hello"])
        XCTAssertEqual(test.server.sessionCount, 1)
    }

    func testIgnoresHTTPRequestsWithSameSidAfterUpgrade() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        try webSocket.sendText("5")
        let poll = try XCTUnwrap(test.connect().request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(poll.status, 400)
        XCTAssertEqual(try TestServer.errorBody(poll).code, 3)
        try webSocket.sendText("4hello")
        XCTAssertEqual(try webSocket.readTexts(), ["4hello"])
    }

    /// As Node's `Server.onWebSocket` (packages/engine.io/lib/server.ts): the second WebSocket
    /// is accepted and then closed ("transport had already been upgraded"); the suite waits for
    /// its close event.
    func testIgnoresWebSocketConnectionWithSameSidAfterUpgrade() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        try webSocket.sendText("5")
        let second = try test.connect()
        let accepted = try XCTUnwrap(second.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)"))
        XCTAssertEqual(accepted.status, 101)
        XCTAssertEqual(try second.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(second.isActive)
        try webSocket.sendText("4hello")
        XCTAssertEqual(try webSocket.readTexts(), ["4hello"])
        XCTAssertEqual(test.delegate.closed.count, 0)
        XCTAssertEqual(test.server.sessionCount, 1)
    }
}
