import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import XCTest

@testable import EngineIO

/// A node of two shards, each an Engine.IO server on its own embedded loop: polling requests
/// that reach the loop of the shard that does not own their session are relayed to the one
/// that does. A hand-off waits until the test runs the target loop, as it would wait for
/// another thread.
final class ShardRelayTests: XCTestCase {
    private var shards: [TestServer] = []

    override func setUp() {
        shards = (0..<2).map { index in
            TestServer {
                $0.shard = LoopShard(index: index, count: 2)
                $0.maxPayload = 100
                $0.pingInterval = .seconds(3600)
                $0.pingTimeout = .seconds(3600)
            }
        }
        let bound = shards.map { NIOLoopBound($0.server, eventLoop: $0.loop) }
        for shard in shards { shard.server.join(shards: bound) }
    }

    private var first: TestServer { shards[0] }
    private var second: TestServer { shards[1] }

    private func pollURI(_ sid: String) -> String { "/engine.io/?EIO=4&transport=polling&sid=\(sid)" }

    /// A polling session of the second shard, opened through its own loop.
    private func sessionOfTheSecondShard() throws -> (sid: String, session: EngineIOSession) {
        let sid = try second.openPollingSession()
        XCTAssertEqual(LoopShard.index(of: sid, count: 2), 1)
        return (sid, try XCTUnwrap(second.delegate.opened.last))
    }

    /// Runs the owning shard's loop, then reads the answer on the connection's.
    private func relayedResponse(_ connection: TestConnection) throws -> TestResponse? {
        second.loop.run()
        return try connection.readResponse()
    }

    func testALongPollOnAnotherLoopWaitsThereAndCarriesThePackets() throws {
        let (sid, session) = try sessionOfTheSecondShard()
        let connection = try first.connect()
        XCTAssertNil(try connection.request("GET", pollURI(sid)))
        XCTAssertNil(try relayedResponse(connection), "nothing to send yet: the poll waits on the session's shard")
        session.send(.text("hello"))
        session.send(.text("again"))
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.body, "4hello")
        XCTAssertEqual(response.header("content-type"), "text/plain; charset=UTF-8")
        // The next poll, on a new connection to the same loop, takes what waited.
        let next = try first.connect()
        _ = try next.request("GET", pollURI(sid))
        XCTAssertEqual(try relayedResponse(next)?.body, "4again")
        XCTAssertEqual(first.server.sessionCount, 0, "the session stays in its own shard's table")
        XCTAssertEqual(second.server.sessionCount, 1)
    }

    func testAPostOnAnotherLoopReachesTheSessionAndGetsItsOk() throws {
        let (sid, _) = try sessionOfTheSecondShard()
        second.delegate.echo = false
        let connection = try first.connect()
        XCTAssertNil(try connection.request("POST", pollURI(sid), body: "4one\u{1e}4two"))
        let response = try XCTUnwrap(try relayedResponse(connection))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.body, "ok")
        XCTAssertEqual(second.delegate.texts, ["one", "two"])
        XCTAssertEqual(first.delegate.texts, [])
    }

    /// A paused session answers a relayed POST only once reading resumes, as its own.
    func testARelayedPostWaitsForResumedReading() throws {
        let (sid, session) = try sessionOfTheSecondShard()
        second.delegate.echo = false
        session.pauseReading()
        let connection = try first.connect()
        _ = try connection.request("POST", pollURI(sid), body: "4held")
        XCTAssertNil(try relayedResponse(connection))
        XCTAssertEqual(second.delegate.texts, [])
        session.resumeReading()
        XCTAssertEqual(second.delegate.texts, ["held"])
        XCTAssertEqual(try connection.readResponse()?.body, "ok")
    }

    func testTheConnectionClosingDuringARelayedPollClosesTheSession() throws {
        let (sid, _) = try sessionOfTheSecondShard()
        let connection = try first.connect()
        _ = try connection.request("GET", pollURI(sid))
        second.loop.run()
        try connection.channel.close().wait()
        first.loop.run()
        XCTAssertEqual(second.delegate.closed.map(\.reason), [], "not before the owning loop hears of it")
        second.loop.run()
        XCTAssertEqual(second.delegate.closed.map(\.sid), [sid])
        XCTAssertEqual(second.delegate.closed.map(\.reason), [.transportError])
    }

    /// A sid that names the other shard but is not in its table gets the error a session of
    /// this shard would: "Session ID unknown" (code 1), from the shard that knows.
    func testAnUnknownSidOfAnotherShardIsUnknownThere() throws {
        let sid = RandomID.make(shard: LoopShard(index: 1, count: 2))
        let connection = try first.connect()
        _ = try connection.request("GET", pollURI(sid))
        let response = try XCTUnwrap(try relayedResponse(connection))
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(response.body, EngineIOError.unknownSid.body)
        // A sid of this shard that does not exist is answered here at once.
        let own = RandomID.make(shard: LoopShard(index: 0, count: 2))
        XCTAssertEqual(try connection.request("GET", pollURI(own))?.body, EngineIOError.unknownSid.body)
    }

    func testATransportMismatchIsRefusedByTheOwningShard() throws {
        let (sid, session) = try sessionOfTheSecondShard()
        let connection = try first.connect()
        _ = try connection.request("GET", "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
        XCTAssertEqual(try relayedResponse(connection)?.status, 400)
        XCTAssertTrue(session.isOpen)
    }

    func testAPostOverMaxPayloadOnAnotherLoopIsRefusedAndClosesTheSession() throws {
        let (sid, _) = try sessionOfTheSecondShard()
        let connection = try first.connect()
        let response = try XCTUnwrap(try connection.request("POST", pollURI(sid), body: "4" + String(repeating: "x", count: 150)))
        XCTAssertEqual(response.status, 413)
        second.loop.run()
        XCTAssertEqual(second.delegate.closed.map(\.reason), [.transportError])
        XCTAssertEqual(second.delegate.texts, [])
    }

    func testABinaryPostOnAnotherLoopIsRefusedAndClosesTheSession() throws {
        let (sid, _) = try sessionOfTheSecondShard()
        let connection = try first.connect()
        _ = try connection.request("POST", pollURI(sid), body: "4x", headers: [("Content-Type", "application/octet-stream")])
        XCTAssertEqual(try relayedResponse(connection)?.status, 400)
        XCTAssertEqual(second.delegate.closed.map(\.reason), [.transportError])
    }

    /// The upgrade of a polling session that lands on the other loop: the WebSocket stays on
    /// the loop that accepted it, the session on its shard; probe, upgrade, packets both ways
    /// and the close cross between them.
    func testAnUpgradeOnAnotherLoopIsRelayedBothWays() throws {
        let (sid, session) = try sessionOfTheSecondShard()
        second.delegate.echo = false
        let connection = try first.connect()
        XCTAssertEqual(try connection.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        second.loop.run()
        XCTAssertFalse(session.canUpgrade, "the upgrade started on the session's shard")

        try connection.sendText("2probe")
        second.loop.run()
        XCTAssertEqual(try connection.readTexts(), ["3probe"])
        try connection.sendText("5")
        second.loop.run()
        XCTAssertEqual(session.transport, .websocket)

        session.send(.text("one"))
        session.send(.text("two"))
        second.loop.run()
        XCTAssertEqual(try connection.readTexts(), ["4one", "4two"])
        try connection.sendText("4hello")
        second.loop.run()
        XCTAssertEqual(second.delegate.texts, ["hello"])

        try connection.channel.close().wait()
        first.loop.run()
        second.loop.run()
        XCTAssertEqual(second.delegate.closed.map(\.reason), [.transportClose])
        XCTAssertEqual(second.server.sessionCount, 0)
    }

    /// Frames written to the relayed WebSockets of one loop in one round cross in one
    /// hand-off, in order per client.
    func testWritesOfOneRoundCrossTogetherInOrder() throws {
        let upgraded = try (0..<3).map { _ in try relayedWebSocketSession() }
        for n in 0..<5 {
            for (_, session) in upgraded { session.send(.text("m\(n)")) }
        }
        XCTAssertEqual(second.server.relayedWrites.count, 15, "waiting for the end of the round")
        second.loop.run()
        XCTAssertEqual(second.server.relayedWrites.count, 0)
        for (connection, _) in upgraded {
            XCTAssertEqual(try connection.readTexts(), (0..<5).map { "4m\($0)" })
        }
    }

    /// The server closing a relayed session sends what was written first, then the close frame.
    func testClosingARelayedSessionSendsItsFramesThenTheClose() throws {
        let (connection, session) = try relayedWebSocketSession()
        session.send(.text("last"))
        session.close()
        second.loop.run()
        let frames = try connection.readFrames()
        XCTAssertEqual(frames.map(\.opcode), [TestFrame.textOpcode, 0x8])
        XCTAssertEqual(frames.first?.text, "4last")
        XCTAssertFalse(connection.isActive)
    }

    func testAnUpgradeForAnUnknownSessionOfAnotherShardIsClosed() throws {
        let sid = RandomID.make(shard: LoopShard(index: 1, count: 2))
        let connection = try first.connect()
        XCTAssertEqual(try connection.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        second.loop.run()
        XCTAssertEqual(try connection.readFrames().map(\.opcode), [0x8])
        XCTAssertFalse(connection.isActive)
    }

    /// A polling session of the second shard upgraded through a connection of the first loop.
    private func relayedWebSocketSession() throws -> (TestConnection, EngineIOSession) {
        let (sid, session) = try sessionOfTheSecondShard()
        let connection = try first.connect()
        XCTAssertEqual(try connection.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101)
        second.loop.run()
        try connection.sendText("2probe")
        second.loop.run()
        XCTAssertEqual(try connection.readTexts(), ["3probe"])
        try connection.sendText("5")
        second.loop.run()
        XCTAssertEqual(session.transport, .websocket)
        return (connection, session)
    }
}
