import EngineIOTestSupport
import NIOCore
import NIOHTTP1
import NIOWebSocket
import XCTest

@testable import EngineIO

/// Behaviour beyond the official suite: server-side close, limits, CORS, keep-alive, upgrade
/// edge cases, and what is left behind after a session ends.
final class ServerBehaviourTests: XCTestCase {
    private func pollURI(_ sid: String) -> String { "/engine.io/?EIO=4&transport=polling&sid=\(sid)" }

    // MARK: server-initiated close

    func testServerCloseWithoutPendingPollDeliversQueuedPacketsThenClosePacket() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.send(.text("bye"))
        session.close()
        XCTAssertFalse(session.isOpen)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.forcedClose])
        session.send(.text("dropped"))
        session.close()
        XCTAssertEqual(test.delegate.closed.count, 1, "the delegate hears of a close once")
        XCTAssertEqual(test.server.sessionCount, 1, "kept until the close packet is delivered")

        let poll = try XCTUnwrap(connection.request("GET", self.pollURI(sid)))
        XCTAssertEqual(poll.body, "4bye\u{1e}1")
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(try connection.request("GET", self.pollURI(sid))?.status, 400)
        XCTAssertEqual(test.delegate.closed.count, 1)
    }

    func testServerClosedPollingSessionIsDroppedAfterCloseTimeout() throws {
        let test = TestServer()
        _ = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.close(reason: .forcedClose)
        test.advance(by: EngineIOSession.pollingCloseTimeout)
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.closed.count, 1)
    }

    func testServerCloseReleasesPendingPollWithClosePacket() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        XCTAssertNil(try connection.request("GET", self.pollURI(sid)))
        try XCTUnwrap(test.delegate.opened.first).close()
        XCTAssertEqual(try connection.readResponse()?.body, "1")
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.forcedClose])
    }

    func testServerCloseOfWebSocketSessionSendsCloseFrameAfterQueuedFrames() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.send([.text("a"), .binary(ByteBuffer(bytes: [7]))])
        session.close()
        let frames = try connection.readFrames()
        XCTAssertEqual(frames.map(\.opcode), [TestFrame.textOpcode, TestFrame.binaryOpcode, TestFrame.closeOpcode])
        XCTAssertEqual(frames.last?.payload, [0x03, 0xE8], "normal closure")
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.forcedClose])
    }

    func testCloseAllClosesEverySessionAndRefusesHandshakes() throws {
        let test = TestServer()
        let (webSocket, _) = try test.openWebSocketSession()
        let poller = try test.connect()
        let pollingSid = try test.openPollingSession(on: poller)
        XCTAssertNil(try poller.request("GET", self.pollURI(pollingSid)))
        _ = try test.openPollingSession()
        XCTAssertEqual(test.server.sessionCount, 3)

        test.server.closeAll(reason: .serverShuttingDown)
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.closed.map(\.reason), Array(repeating: .serverShuttingDown, count: 3))
        XCTAssertEqual(try webSocket.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertEqual(try poller.readResponse()?.body, "1")
        XCTAssertEqual(try test.connect().request("GET", "/engine.io/?EIO=4&transport=polling")?.status, 503)
        XCTAssertEqual(try test.connect().upgrade("/engine.io/?EIO=4&transport=websocket")?.status, 503)
    }

    // MARK: limits and malformed input

    func testPostOverMaxPayloadGets413AndClosesSession() throws {
        let test = TestServer { $0.maxPayload = 10 }
        let sid = try test.openPollingSession()
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.request("POST", self.pollURI(sid), body: "4" + String(repeating: "x", count: 10)))
        XCTAssertEqual(response.status, 413)
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.texts, [])
    }

    func testPostAtMaxPayloadIsAccepted() throws {
        let test = TestServer { $0.maxPayload = 10 }
        let sid = try test.openPollingSession()
        let response = try XCTUnwrap(test.connect().request("POST", self.pollURI(sid), body: "4" + String(repeating: "x", count: 9)))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(test.delegate.texts, [String(repeating: "x", count: 9)])
    }

    func testWebSocketMessageOverMaxPayloadClosesSession() throws {
        let test = TestServer { $0.maxPayload = 10 }
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendText("4" + String(repeating: "x", count: 10))
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.closeOpcode, payload: [0x03, 0xF1])])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testFragmentedWebSocketMessageOverMaxPayloadClosesSession() throws {
        let test = TestServer { $0.maxPayload = 10 }
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: TestFrame.textOpcode, payload: Array("4xxxxx".utf8), fin: false)
        try connection.sendFrame(opcode: 0, payload: Array("xxxxx".utf8), fin: true)
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
    }

    func testContinuationWithoutAStartClosesWithProtocolError() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: 0, payload: Array("4stray".utf8), fin: true)
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.closeOpcode, payload: [0x03, 0xEA])])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.texts, [])
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
    }

    func testBinaryContentTypePostIsRefused() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let response = try XCTUnwrap(test.connect().request("POST", self.pollURI(sid), body: "4x",
                                                            headers: [("Content-Type", "application/octet-stream")]))
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
    }

    func testOverlappingPostsCloseSession() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let slow = try test.connect()
        try slow.sendRaw(ByteBuffer(string: "POST \(self.pollURI(sid)) HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n4he"))
        let overlap = try XCTUnwrap(test.connect().request("POST", self.pollURI(sid), body: "4x"))
        XCTAssertEqual(overlap.status, 400)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        try slow.sendRaw(ByteBuffer(string: "llo"))
        XCTAssertEqual(try slow.readResponse()?.status, 400)
        XCTAssertEqual(test.delegate.texts, [])
    }

    func testPingFromClientIsATransportError() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendText("2")
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
    }

    func testOnlyPongAnswersPing() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        test.advance(by: .milliseconds(300))
        XCTAssertEqual(try connection.readTexts(), ["2"])
        try connection.sendText("4still here")
        test.advance(by: .milliseconds(200))
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.pingTimeout])
    }

    func testPacketsAfterDelegateClosesSessionAreIgnored() throws {
        let test = TestServer()
        test.delegate.echo = false
        test.delegate.onText = { session, _ in session.close() }
        let poller = try test.connect()
        let sid = try test.openPollingSession(on: poller)
        let push = try XCTUnwrap(test.connect().request("POST", self.pollURI(sid), body: "4a\u{1e}4b"))
        XCTAssertEqual(push.status, 200)
        XCTAssertEqual(test.delegate.texts, ["a"])
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.forcedClose])
        XCTAssertEqual(try poller.request("GET", self.pollURI(sid))?.body, "1")
    }

    // MARK: HTTP details

    func testPathOutsideEngineIOIsNotFound() throws {
        let test = TestServer()
        let connection = try test.connect()
        XCTAssertEqual(try connection.request("GET", "/")?.status, 404)
        XCTAssertEqual(try connection.request("GET", "/engine.io?EIO=4&transport=polling")?.status, 404)
        XCTAssertEqual(try connection.request("GET", "/other/?EIO=4&transport=polling")?.status, 404)
    }

    func testCustomPath() throws {
        let test = TestServer { $0.path = "/socket.io/" }
        let connection = try test.connect()
        XCTAssertEqual(try connection.request("GET", "/socket.io/?EIO=4&transport=polling")?.status, 200)
        XCTAssertEqual(try connection.request("GET", "/engine.io/?EIO=4&transport=polling")?.status, 404)
    }

    func testKeepAliveConnectionServesManyRequests() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        for index in 0..<5 {
            XCTAssertEqual(try connection.request("POST", self.pollURI(sid), body: "4m\(index)")?.body, "ok")
            XCTAssertEqual(try connection.request("GET", self.pollURI(sid))?.body, "4m\(index)")
        }
        XCTAssertTrue(connection.isActive)
    }

    func testConnectionCloseRequestClosesAfterResponse() throws {
        let test = TestServer()
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling", keepAlive: false))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("connection"), "close")
        XCTAssertFalse(connection.isActive)
    }

    func testPollRespondsWithContiguousMessages() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        XCTAssertNil(try connection.request("GET", self.pollURI(sid)))
        try XCTUnwrap(test.delegate.opened.first).send([.text("451-[\"e\",{\"_placeholder\":true,\"num\":0}]"), .binary(ByteBuffer(bytes: [0xFF]))])
        XCTAssertEqual(try connection.readResponse()?.body, "4451-[\"e\",{\"_placeholder\":true,\"num\":0}]\u{1e}b/w==")
    }

    func testBroadcastMessageReachesEverySession() throws {
        let test = TestServer()
        let (first, _) = try test.openWebSocketSession()
        let (second, _) = try test.openWebSocketSession()
        let poller = try test.connect()
        _ = try test.openPollingSession(on: poller)
        let message = EngineIOMessage.text("broadcast")
        for session in test.delegate.opened { session.send(message) }
        XCTAssertEqual(try first.readTexts(), ["4broadcast"])
        XCTAssertEqual(try second.readTexts(), ["4broadcast"])
        let sid = try XCTUnwrap(test.delegate.opened.last?.id)
        XCTAssertEqual(try poller.request("GET", self.pollURI(sid))?.body, "4broadcast")
    }

    // MARK: CORS

    func testNoCORSHeadersWhenDisabled() throws {
        let test = TestServer()
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling", headers: [("Origin", "http://a.example")]))
        XCTAssertNil(response.header("access-control-allow-origin"))
        XCTAssertNil(response.header("vary"))
        let options = try XCTUnwrap(connection.request("OPTIONS", "/engine.io/?EIO=4&transport=polling"))
        XCTAssertEqual(options.status, 400)
        XCTAssertEqual(try TestServer.errorBody(options).code, 2)
    }

    func testCORSWithOriginList() throws {
        let test = TestServer { $0.allowedOrigins = try! AllowedOrigins(["http://a.example"]) }
        let connection = try test.connect()
        let allowed = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling", headers: [("Origin", "http://a.example")]))
        XCTAssertEqual(allowed.header("access-control-allow-origin"), "http://a.example")
        XCTAssertEqual(allowed.header("vary"), "Origin")
        let other = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=abc", headers: [("Origin", "http://b.example")]))
        XCTAssertEqual(other.status, 403, "another origin is refused before anything else is checked")
        XCTAssertEqual(try TestServer.errorBody(other).code, 4)
        XCTAssertNil(other.header("access-control-allow-origin"))
        XCTAssertEqual(other.header("vary"), "Origin")

        let preflight = try XCTUnwrap(connection.request("OPTIONS", "/engine.io/?EIO=4&transport=polling", headers: [
            ("Origin", "http://a.example"), ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ]))
        XCTAssertEqual(preflight.status, 204)
        XCTAssertEqual(preflight.header("access-control-allow-origin"), "http://a.example")
        XCTAssertEqual(preflight.header("access-control-allow-methods"), "GET,POST")
        XCTAssertEqual(preflight.header("access-control-allow-headers"), "content-type")
        XCTAssertEqual(preflight.headerValues("vary"), ["Origin", "Access-Control-Request-Headers"])
        XCTAssertEqual(test.server.sessionCount, 1)
    }

    func testCORSAnyOrigin() throws {
        let test = TestServer { $0.allowedOrigins = try! AllowedOrigins(["*"]) }
        let sid = try test.openPollingSession()
        let response = try XCTUnwrap(test.connect().request("POST", self.pollURI(sid), body: "4x", headers: [("Origin", "http://z.example")]))
        XCTAssertEqual(response.header("access-control-allow-origin"), "*")
        XCTAssertNil(response.header("vary"))
    }

    // MARK: WebSocket details

    func testWebSocketDisabled() throws {
        let test = TestServer { $0.transports = [.polling] }
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling"))
        XCTAssertEqual(try TestServer.openPacket(response.body)["upgrades"] as? [String], [])
        let refused = try XCTUnwrap(test.connect().upgrade("/engine.io/?EIO=4&transport=websocket"))
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual(try TestServer.errorBody(refused).code, 0)
    }

    func testWebSocketPipelineIsMinimalAfterUpgrade() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        let pipeline = connection.channel.pipeline.syncOperations
        XCTAssertThrowsError(try pipeline.handler(type: EngineIOHTTPHandler.self))
        XCTAssertThrowsError(try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self))
        XCTAssertThrowsError(try pipeline.handler(type: HTTPResponseEncoder.self))
        XCTAssertThrowsError(try pipeline.handler(type: HTTPServerPipelineHandler.self))
        XCTAssertNoThrow(try pipeline.handler(type: WebSocketTransportHandler.self))
        XCTAssertNoThrow(try pipeline.handler(type: WebSocketFrameReader.self))
        XCTAssertThrowsError(try pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self))
        XCTAssertThrowsError(try pipeline.handler(type: NIOWebSocketFrameAggregator.self),
                             "the aggregator waits for a first fragment")
    }

    func testFragmentedWebSocketMessageIsAggregated() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: TestFrame.textOpcode, payload: Array("4hel".utf8), fin: false)
        try connection.sendFrame(opcode: 0, payload: Array("lo".utf8), fin: true)
        XCTAssertEqual(test.delegate.texts, ["hello"])
        XCTAssertEqual(try connection.readTexts(), ["4hello"])
        XCTAssertNoThrow(try connection.channel.pipeline.syncOperations.handler(type: NIOWebSocketFrameAggregator.self))
        try connection.sendFrame(opcode: TestFrame.textOpcode, payload: Array("4a".utf8), fin: false)
        try connection.sendFrame(opcode: 0, payload: Array("b".utf8), fin: false)
        try connection.sendFrame(opcode: 0, payload: Array("c".utf8), fin: true)
        try connection.sendText("4whole")
        XCTAssertEqual(test.delegate.texts, ["hello", "abc", "whole"])
    }

    func testWebSocketPingFrameIsAnswered() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: TestFrame.pingOpcode, payload: [1, 2])
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.pongOpcode, payload: [1, 2])])
    }

    func testWebSocketCloseHandshakeFromClient() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: TestFrame.closeOpcode, payload: [0x03, 0xE9])
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.closeOpcode, payload: [0x03, 0xE9])])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportClose])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    func testWebSocketConnectionDropIsTransportClose() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.channel.close().wait()
        test.loop.run()
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportClose])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: upgrade details

    func testProbeReleasesPendingPollWithNoop() throws {
        let test = TestServer()
        let poller = try test.connect()
        let sid = try test.openPollingSession(on: poller)
        XCTAssertNil(try poller.request("GET", self.pollURI(sid)))
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        XCTAssertEqual(try poller.readResponse()?.body, "6")
    }

    func testPacketsQueuedDuringUpgradeGoOverWebSocket() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        session.send(.text("queued"))
        try webSocket.sendText("5")
        XCTAssertEqual(session.transport, .websocket)
        XCTAssertEqual(try webSocket.readTexts(), ["4queued"])
    }

    func testUpgradeTimeoutDropsWebSocketAndKeepsPolling() throws {
        let test = TestServer { $0.pingInterval = .seconds(60); $0.upgradeTimeout = .milliseconds(100) }
        let poller = try test.connect()
        let sid = try test.openPollingSession(on: poller)
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        test.advance(by: .milliseconds(100))
        XCTAssertEqual(try webSocket.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(webSocket.isActive)
        XCTAssertEqual(test.delegate.closed.count, 0)
        XCTAssertEqual(try poller.request("POST", self.pollURI(sid), body: "4x")?.body, "ok")
        XCTAssertEqual(try poller.request("GET", self.pollURI(sid))?.body, "4x")
        // A new upgrade may start once the failed one is gone.
        XCTAssertEqual(try test.connect().upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
    }

    func testUnexpectedPacketDuringUpgradeDropsWebSocket() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("4hello")
        XCTAssertFalse(webSocket.isActive)
        XCTAssertEqual(test.delegate.texts, [])
        XCTAssertEqual(test.delegate.opened.first?.transport, .polling)
        XCTAssertTrue(try XCTUnwrap(test.delegate.opened.first).isOpen)
    }

    /// Node's `onWebSocket` closes a WebSocket for a session that is still upgrading too
    /// ("transport has already been trying to upgrade"); the first upgrade goes on.
    func testClosesASecondWebSocketWhileTheFirstUpgrades() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        let second = try test.connect()
        XCTAssertEqual(try second.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        XCTAssertEqual(try second.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(second.isActive)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"])
        try webSocket.sendText("5")
        try webSocket.sendText("4hello")
        XCTAssertEqual(try webSocket.readTexts(), ["4hello"])
        XCTAssertEqual(test.delegate.opened.first?.transport, .websocket)
        XCTAssertEqual(test.delegate.closed.count, 0)
    }

    func testClosingSessionDuringUpgradeClosesWebSocket() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try XCTUnwrap(test.delegate.opened.first).close()
        test.loop.run()
        XCTAssertFalse(webSocket.isActive)
    }

    func testLateUpgradeOnKeepAliveConnectionIsRefused() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let late = try XCTUnwrap(connection.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)"))
        XCTAssertEqual(late.status, 400)
        XCTAssertEqual(try TestServer.errorBody(late).code, 3)
        XCTAssertEqual(late.header("connection"), "close")
        XCTAssertFalse(connection.isActive)

        let other = try test.connect()
        _ = try test.openPollingSession(on: other)
        let lateHandshake = try XCTUnwrap(other.upgrade("/engine.io/?EIO=4&transport=websocket"))
        XCTAssertEqual(lateHandshake.status, 400)
        XCTAssertEqual(try TestServer.errorBody(lateHandshake).code, 3)
        XCTAssertFalse(other.isActive)
        XCTAssertTrue(try XCTUnwrap(test.delegate.opened.first).isOpen)
    }

    func testUnknownSid() throws {
        let test = TestServer()
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.request("GET", self.pollURI("nope")))
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(try TestServer.errorBody(response).code, 1)
        XCTAssertEqual(try TestServer.errorBody(response).message, "Session ID unknown")
        XCTAssertEqual(try test.connect().upgrade("/engine.io/?EIO=4&transport=websocket&sid=nope")?.status, 400)
    }

    // MARK: leaks

    func testClosedSessionsAreReleased() throws {
        let test = TestServer()
        weak var pollingSession: EngineIOSession?
        weak var webSocketSession: EngineIOSession?
        try {
            let poller = try test.connect()
            let sid = try test.openPollingSession(on: poller)
            XCTAssertNil(try poller.request("GET", self.pollURI(sid)))
            let (webSocket, _) = try test.openWebSocketSession()
            pollingSession = test.delegate.opened[0]
            webSocketSession = test.delegate.opened[1]
            XCTAssertEqual(try test.connect().request("POST", self.pollURI(sid), body: "1")?.status, 200)
            try webSocket.sendText("1")
            try poller.channel.close().wait()
        }()
        test.loop.run()
        XCTAssertEqual(test.server.sessionCount, 0)
        test.delegate.opened.removeAll()
        XCTAssertNil(pollingSession)
        XCTAssertNil(webSocketSession)
    }
}
