import EngineIOTestSupport
import NIOCore
import NIOWebSocket
import XCTest

@testable import EngineIO

/// Counts the read requests that reach the front of the pipeline, that is the socket.
private final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var reads = 0

    func read(context: ChannelHandlerContext) {
        self.reads += 1
        context.read()
    }
}

/// `pauseReading()` / `resumeReading()` and `bufferedBytes`.
final class FlowControlTests: XCTestCase {
    private func pollURI(_ sid: String) -> String { "/engine.io/?EIO=4&transport=polling&sid=\(sid)" }

    private func countReads(on connection: TestConnection) throws -> ReadCounter {
        let counter = ReadCounter()
        try connection.channel.pipeline.syncOperations.addHandler(counter, position: .first)
        return counter
    }

    // MARK: WebSocket

    func testPausedWebSocketHoldsBackReadsAndFramesUntilResumed() throws {
        let test = TestServer()
        test.delegate.echo = false
        let (connection, _) = try test.openWebSocketSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        let counter = try self.countReads(on: connection)
        connection.channel.read()
        XCTAssertEqual(counter.reads, 1, "reads pass while not paused")

        session.pauseReading()
        session.pauseReading()
        XCTAssertTrue(session.isReadingPaused)
        connection.channel.read()
        XCTAssertEqual(counter.reads, 1, "the socket is not read while paused")
        try connection.sendText("4a")
        try connection.sendFrame(opcode: TestFrame.binaryOpcode, payload: [1, 2])
        try connection.sendText("4b")
        XCTAssertEqual(test.delegate.texts, [])
        XCTAssertEqual(test.delegate.binaries, [])

        session.resumeReading()
        XCTAssertFalse(session.isReadingPaused)
        XCTAssertEqual(test.delegate.texts, ["a", "b"])
        XCTAssertEqual(test.delegate.binaries, [[1, 2]])
        XCTAssertEqual(counter.reads, 2, "the held-back read is passed on at resume")
        try connection.sendText("4c")
        XCTAssertEqual(test.delegate.texts, ["a", "b", "c"])
        session.resumeReading()
        XCTAssertEqual(counter.reads, 2, "resuming twice does nothing more")
    }

    func testPauseFromCallbackStopsDeliveryOfHeldFrames() throws {
        let test = TestServer()
        test.delegate.echo = false
        let (connection, _) = try test.openWebSocketSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        let counter = try self.countReads(on: connection)
        session.pauseReading()
        connection.channel.read()
        for text in ["4a", "4b", "4c"] { try connection.sendText(text) }
        test.delegate.onText = { session, text in
            if text == "a" { session.pauseReading() }
        }
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["a"])
        XCTAssertTrue(session.isReadingPaused)
        XCTAssertEqual(counter.reads, 0, "still paused: the read stays held back")
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["a", "b", "c"])
        XCTAssertEqual(counter.reads, 1)
    }

    func testPausedWebSocketSessionClosesNormally() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        try connection.sendText("4held")
        session.close()
        XCTAssertEqual(try connection.readFrames().map(\.opcode), [TestFrame.closeOpcode])
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.forcedClose])
        XCTAssertEqual(test.delegate.texts, [])
        XCTAssertEqual(test.server.sessionCount, 0)
    }

    // MARK: polling

    func testPausedPollingPostIsAnsweredAfterResumeWithItsPacketsDelivered() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "4a\u{1e}4b"), "the answer waits for resume")
        XCTAssertEqual(test.delegate.texts, [])

        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["a", "b"])
        let answer = try XCTUnwrap(poster.readResponse())
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(answer.body, "ok")
        XCTAssertEqual(try poster.request("POST", self.pollURI(sid), body: "4c")?.body, "ok")
        XCTAssertEqual(test.delegate.texts, ["a", "b", "c"])
    }

    func testPauseDuringPostDeliveryHoldsTheRestAndTheAnswer() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        test.delegate.onText = { session, text in
            if text == "a" { session.pauseReading() }
        }
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "4a\u{1e}4b"))
        XCTAssertEqual(test.delegate.texts, ["a"])
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["a", "b"])
        XCTAssertEqual(try poster.readResponse()?.body, "ok")
    }

    func testMalformedPacketOfHeldPostFailsSessionAfterResume() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "4a\u{1e}9"))
        XCTAssertTrue(session.isOpen)
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["a"])
        XCTAssertEqual(try poster.readResponse()?.status, 400)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.parseError])
    }

    func testClosingPausedPollingSessionAnswersHeldPost() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "4dropped"))
        session.close()
        XCTAssertEqual(try poster.readResponse()?.body, "ok", "as Node answers a POST for a closed socket")
        XCTAssertEqual(try connection.request("GET", self.pollURI(sid))?.body, "1")
        XCTAssertEqual(test.delegate.texts, [])
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.forcedClose])
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, [], "nothing is delivered after the close")
    }

    func testHeldPostWhoseConnectionClosesIsATransportError() throws {
        let test = TestServer()
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "4x"))
        try poster.channel.close().wait()
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        XCTAssertEqual(test.server.sessionCount, 0)
        XCTAssertEqual(test.delegate.texts, [])
    }

    func testPausedPollingClientHitsPingTimeoutAsInNode() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        test.advance(by: .milliseconds(300))
        XCTAssertEqual(try connection.request("GET", self.pollURI(sid))?.body, "2")
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "3"), "the pong waits like any packet")
        test.advance(by: .milliseconds(200))
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.pingTimeout])
        XCTAssertEqual(try poster.readResponse()?.body, "ok")
    }

    // MARK: upgrade

    func testPauseSurvivesUpgradeToWebSocket() throws {
        let test = TestServer()
        test.delegate.echo = false
        let poller = try test.connect()
        let sid = try test.openPollingSession(on: poller)
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        let counter = try self.countReads(on: webSocket)
        try webSocket.sendText("2probe")
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"], "the upgrade itself goes on while paused")
        try webSocket.sendText("5")
        XCTAssertEqual(session.transport, .websocket)
        XCTAssertTrue(session.isReadingPaused)

        webSocket.channel.read()
        XCTAssertEqual(counter.reads, 0)
        try webSocket.sendText("4x")
        XCTAssertEqual(test.delegate.texts, [])
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["x"])
        XCTAssertEqual(counter.reads, 1)
    }

    func testPostHeldAcrossUpgradeIsDeliveredBeforeWebSocketFrames() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let poster = try test.connect()
        XCTAssertNil(try poster.request("POST", self.pollURI(sid), body: "4first"))
        let webSocket = try test.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        try webSocket.sendText("2probe")
        try webSocket.sendText("5")
        try webSocket.sendText("4second")
        XCTAssertEqual(session.transport, .websocket)
        XCTAssertEqual(test.delegate.texts, [])
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, ["first", "second"])
        XCTAssertEqual(try poster.readResponse()?.body, "ok")
    }

    // MARK: bufferedBytes

    func testBufferedBytesCountsQueuedPollingPacketsUntilAPollDrainsThem() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        XCTAssertEqual(session.bufferedBytes, 0)
        session.send(.text("abc"))
        XCTAssertEqual(session.bufferedBytes, 4)
        session.send([.binary(ByteBuffer(bytes: [1, 2, 3])), .text("")])
        let poll = try XCTUnwrap(connection.request("GET", self.pollURI(sid)))
        XCTAssertEqual(poll.body, "4abc\u{1e}bAQID\u{1e}4")
        XCTAssertEqual(session.bufferedBytes, 0)
    }

    func testBufferedBytesMatchesPayloadSizeBeforeDrain() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.send([.text("héllo"), .binary(ByteBuffer(bytes: [0xFF, 0, 7, 9])), .text("x")])
        let queued = session.bufferedBytes
        let poll = try XCTUnwrap(connection.request("GET", self.pollURI(sid)))
        XCTAssertEqual(queued, poll.body.utf8.count)
        XCTAssertEqual(session.bufferedBytes, 0)
    }

    func testBufferedBytesOfWebSocketIsWhatTheChannelStillHolds() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.send(.text("flushed"))
        XCTAssertEqual(session.bufferedBytes, 10, "sends wait for the end of the loop's round to be flushed")
        test.loop.run()
        XCTAssertEqual(session.bufferedBytes, 0, "the embedded channel takes flushed bytes at once")
        let frame = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "4abc"))
        connection.channel.write(frame, promise: nil)
        XCTAssertEqual(session.bufferedBytes, 6, "2 header bytes and the payload, written but not flushed")
        connection.channel.flush()
        XCTAssertEqual(session.bufferedBytes, 0)
        XCTAssertEqual(try connection.readTexts(), ["4flushed", "4abc"])
    }

    func testSendUnlessBufferingSendsUpToTheLimitOnPolling() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        XCTAssertTrue(session.send([.text("abc")], unlessBufferingMoreThan: 4))
        XCTAssertTrue(session.send([.text("de")], unlessBufferingMoreThan: 4), "4 bytes wait: not more than the limit")
        XCTAssertFalse(session.send([.text("f")], unlessBufferingMoreThan: 4))
        XCTAssertEqual(session.bufferedBytes, 8)
        let poll = try XCTUnwrap(connection.request("GET", self.pollURI(sid)))
        XCTAssertEqual(poll.body, "4abc\u{1e}4de", "what was refused was not queued")
    }

    func testSendUnlessBufferingSendsUpToTheLimitOnWebSocket() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        XCTAssertTrue(session.send([.text("abc"), .text("de")], unlessBufferingMoreThan: 0))
        XCTAssertFalse(session.send([.text("f")], unlessBufferingMoreThan: 8), "two frames of 6 and 5 bytes wait")
        XCTAssertTrue(session.send([.text("g")], unlessBufferingMoreThan: 11))
        test.loop.run()
        XCTAssertTrue(session.send([.text("h")], unlessBufferingMoreThan: 0), "the round's flush emptied the channel")
        test.loop.run()
        XCTAssertEqual(try connection.readTexts(), ["4abc", "4de", "4g", "4h"])
    }

    func testSendsOfOneLoopRoundShareOneFlush() throws {
        let test = TestServer()
        var flushes = 0
        // Ahead of the server's handlers, as TLS would be: otherwise flushes go straight to the
        // channel, past any handler.
        let (connection, _) = try test.openWebSocketSession(ahead: FlushCounter { flushes += 1 })
        let session = try XCTUnwrap(test.delegate.opened.first)
        flushes = 0
        session.send(.text("a"))
        session.send(.text("b"))
        session.send(.text("c"))
        XCTAssertEqual(flushes, 0)
        test.loop.run()
        XCTAssertEqual(flushes, 1)
        XCTAssertEqual(try connection.readTexts(), ["4a", "4b", "4c"])
    }
}

extension FlowControlTests {
    func testSendsToManySessionsAreFlushedInBatchesWithinTheRound() throws {
        let test = TestServer()
        let count = EngineIOServer.flushBatchSize + 1
        let connections = try (0..<count).map { _ in try test.openWebSocketSession().0 }
        for session in test.delegate.opened { session.send(.text("x")) }
        let flushed = try connections.map { try $0.channel.readOutbound(as: ByteBuffer.self) != nil }
        XCTAssertEqual(flushed, Array(repeating: true, count: count - 1) + [false],
                       "a full batch goes out at once, the rest at the end of the round")
        test.loop.run()
        XCTAssertNotNil(try connections.last?.channel.readOutbound(as: ByteBuffer.self))
    }
}

/// Counts the flushes that reach the front of the pipeline.
private final class FlushCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    private let onFlush: () -> Void

    init(onFlush: @escaping () -> Void) {
        self.onFlush = onFlush
    }

    func flush(context: ChannelHandlerContext) {
        self.onFlush()
        context.flush()
    }
}
