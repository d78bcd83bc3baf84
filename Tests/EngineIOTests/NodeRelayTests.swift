import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import XCTest

@testable import EngineIO

/// Two nodes of one shard each, every node an Engine.IO server and its relay on an embedded
/// loop, joined by a bus that hands each message to the other node's loop (as Redis would, in
/// order): requests for a session of the other node are relayed to it and answered through the
/// node the client reached.
final class NodeRelayTests: XCTestCase {
    /// Carries messages between the relays of the test's nodes; drops them while `isCut`.
    private final class Bus: SessionRelayBus {
        let node: RelayNode
        var relays: [RelayNode: NodeRelay] = [:]
        var isCut = false
        var published: [SessionRelayMessage] = []

        init(node: RelayNode) { self.node = node }

        func publish(_ message: SessionRelayMessage, to node: RelayNode) {
            published.append(message)
            guard !isCut, let relay = relays[node] else { return }
            let sender = self.node
            let bound = NIOLoopBound(relay, eventLoop: relay.eventLoop)
            relay.eventLoop.execute { bound.value.received(message, from: sender) }
        }

        /// Nodes that left their channel, as Redis would count them.
        var gone: Set<RelayNode> = []
        /// Redis does not answer: the question fails.
        var cannotTell = false

        func isListening(_ node: RelayNode) -> EventLoopFuture<Bool> {
            let asker = relays[self.node]!.eventLoop
            if cannotTell { return asker.makeFailedFuture(ChannelError.ioOnClosedChannel) }
            return asker.makeSucceededFuture(relays[node] != nil && !gone.contains(node))
        }
    }

    private var owner: TestServer!
    private var other: TestServer!
    private var buses: [Bus] = []
    private let timeout: TimeAmount = .seconds(1)
    private let holdLimit: TimeAmount = .seconds(45)

    override func setUp() {
        let configure: (inout EngineIOConfiguration) -> Void = {
            $0.pingInterval = .seconds(3600)
            $0.pingTimeout = .seconds(3600)
            $0.allowEIO3 = true
        }
        owner = TestServer(configure)
        other = TestServer(configure)
        let nodes = [RelayNode(tag: "AAAA")!, RelayNode(tag: "BBBB")!]
        var relays: [RelayNode: NodeRelay] = [:]
        for (server, node) in zip([owner!, other!], nodes) {
            let relay = NodeRelay(node: node, eventLoop: server.loop, timeout: timeout, holdLimit: holdLimit, logger: server.server.logger)
            let bus = Bus(node: node)
            relay.bus = bus
            buses.append(bus)
            relays[node] = relay
            _ = relay.join(shards: [NIOLoopBound(server.server, eventLoop: server.loop)])
            server.loop.run()
        }
        for bus in buses { bus.relays = relays }
    }

    private func pollURI(_ sid: String) -> String { "/engine.io/?EIO=4&transport=polling&sid=\(sid)" }

    /// Runs both loops until neither has work: every message delivered and answered.
    private func pump() {
        for _ in 0..<10 {
            owner.loop.run()
            other.loop.run()
        }
    }

    private func ownersSession() throws -> (sid: String, session: EngineIOSession) {
        let sid = try owner.openPollingSession()
        XCTAssertEqual(RelayNode(owning: sid)?.tag, "AAAA")
        return (sid, try XCTUnwrap(owner.delegate.opened.last))
    }

    func testALongPollWaitsOnTheOwnerAndCarriesItsPackets() throws {
        let (sid, session) = try ownersSession()
        let connection = try other.connect()
        XCTAssertNil(try connection.request("GET", pollURI(sid)))
        pump()
        XCTAssertNil(try connection.readResponse(), "nothing to send yet: the poll is held by the owner")
        XCTAssertTrue(buses[0].published.contains(.held(id: 1)))
        other.advance(by: timeout + .milliseconds(1))
        XCTAssertNil(try connection.readResponse(), "held: the timeout for the first answer no longer applies")
        session.send(.text("hello"))
        pump()
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.body, "4hello")
        XCTAssertEqual(other.server.sessionCount, 0)
    }

    func testAPostReachesTheOwnerAndGetsItsOk() throws {
        let (sid, _) = try ownersSession()
        owner.delegate.echo = false
        let connection = try other.connect()
        XCTAssertNil(try connection.request("POST", pollURI(sid), body: "4one\u{1e}4two"))
        pump()
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.body, "ok")
        XCTAssertEqual(owner.delegate.texts, ["one", "two"])
        XCTAssertEqual(other.delegate.texts, [])
    }

    func testTheOwnersErrorsComeBackAsItsOwn() throws {
        let (sid, _) = try ownersSession()
        let connection = try other.connect()
        XCTAssertNil(try connection.request("PUT", pollURI(sid)))
        pump()
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(try TestServer.errorBody(response).code, EngineIOError.badRequest.rawValue)
        // A sid of the owner's node it does not know.
        let unknown = String(sid.prefix(6)) + "AAAAAAAAA"
        let second = try other.connect()
        XCTAssertNil(try second.request("GET", pollURI(unknown)))
        pump()
        XCTAssertEqual(try TestServer.errorBody(try XCTUnwrap(second.readResponse())).message, "Session ID unknown")
    }

    func testAnOwnerThatDoesNotAnswerInTimeGivesSessionIDUnknown() throws {
        let (sid, _) = try ownersSession()
        buses[1].isCut = true
        let connection = try other.connect()
        XCTAssertNil(try connection.request("GET", pollURI(sid)))
        pump()
        other.advance(by: timeout - .milliseconds(1))
        XCTAssertNil(try connection.readResponse())
        other.advance(by: .milliseconds(1))
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(try TestServer.errorBody(response).message, "Session ID unknown")
    }

    func testAHeldRequestGivesUpAfterAPingIntervalAndTimeout() throws {
        let (sid, _) = try ownersSession()
        let connection = try other.connect()
        XCTAssertNil(try connection.request("GET", pollURI(sid)))
        pump()
        buses[0].isCut = true
        other.advance(by: holdLimit)
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(try TestServer.errorBody(response).message, "Session ID unknown")
        // The owner heard that the request is gone: the session fails as for a dropped poll.
        pump()
        XCTAssertEqual(owner.delegate.closed.map(\.reason), [.transportError])
    }

    func testTheClientClosingAHeldPollClosesTheSession() throws {
        let (sid, _) = try ownersSession()
        let connection = try other.connect()
        XCTAssertNil(try connection.request("GET", pollURI(sid)))
        pump()
        try connection.channel.close().wait()
        pump()
        XCTAssertEqual(owner.delegate.closed.map(\.reason), [.transportError])
    }

    /// An Engine.IO v3 session's payload is encoded by the owner, which knows its protocol: the
    /// XHR2 binary payload keeps its content type through the relay.
    func testAV3SessionsPayloadKeepsItsFormat() throws {
        let handshake = try XCTUnwrap(try owner.connect().request("GET", "/engine.io/?EIO=3&transport=polling"))
        let sid = try XCTUnwrap(handshake.body.firstRange(of: #""sid":""#).map { range in
            String(handshake.body[range.upperBound...].prefix { $0 != "\"" })
        })
        let session = try XCTUnwrap(owner.delegate.opened.last)
        session.send(.binary(ByteBuffer(bytes: [0xAB])))
        let connection = try other.connect()
        XCTAssertNil(try connection.request("GET", "/engine.io/?EIO=3&transport=polling&sid=\(sid)"))
        pump()
        let response = try XCTUnwrap(try connection.readResponse())
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("content-type"), "application/octet-stream")
        // Binary, length 2, end of length, type 4, the byte (the test reads bodies as UTF-8 text).
        XCTAssertEqual(response.body, String(decoding: [1, 2, 0xFF, 4, 0xAB] as [UInt8], as: UTF8.self))
    }

    /// A WebSocket for the owner's session `sid`, opened on the other node and probed.
    private func probedWebSocketOnTheOtherNode(_ sid: String, file: StaticString = #filePath, line: UInt = #line) throws -> TestConnection {
        let webSocket = try other.connect()
        XCTAssertEqual(try webSocket.upgrade("/engine.io/?EIO=4&transport=websocket&sid=\(sid)")?.status, 101, file: file, line: line)
        pump()
        try webSocket.sendText("2probe")
        pump()
        XCTAssertEqual(try webSocket.readTexts(), ["3probe"], file: file, line: line)
        return webSocket
    }

    /// The WebSocket stays on the node that took it; its frames cross both ways.
    func testAnUpgradeOnTheOtherNodeRelaysFrames() throws {
        let (sid, session) = try ownersSession()
        let webSocket = try probedWebSocketOnTheOtherNode(sid)
        try webSocket.sendText("5")
        pump()
        XCTAssertEqual(session.transport, .websocket)
        owner.delegate.echo = false
        try webSocket.sendText("4from the client")
        pump()
        XCTAssertEqual(owner.delegate.texts, ["from the client"])
        session.send(.text("one"))
        session.send(.text("two"))
        pump()
        XCTAssertEqual(try webSocket.readTexts(), ["4one", "4two"])
        XCTAssertEqual(buses[0].published.filter { if case .frames = $0 { true } else { false } }.count, 2,
                       "the probe's pong, then both messages of one round in one message")
        session.close()
        pump()
        XCTAssertEqual(try webSocket.readFrames().last?.opcode, TestFrame.closeOpcode)
    }

    /// An owner that died without draining sends no close: the relaying node closes the
    /// WebSocket once the bus says twice in a row that the owner left its channel, and not
    /// while the bus cannot tell.
    func testARelayedWebSocketClosesOnceItsOwnerIsGone() throws {
        let (sid, _) = try ownersSession()
        let webSocket = try probedWebSocketOnTheOtherNode(sid)
        let check = TimeAmount.seconds(2)
        other.advance(by: check * 3)
        XCTAssertEqual(try webSocket.readFrames(), [], "its owner listens")
        buses[1].cannotTell = true
        buses[1].gone = [RelayNode(tag: "AAAA")!]
        other.advance(by: check * 3)
        XCTAssertEqual(try webSocket.readFrames(), [], "Redis did not answer")
        buses[1].cannotTell = false
        other.advance(by: check)
        XCTAssertEqual(try webSocket.readFrames(), [], "one answer may be the owner between two Redis links")
        other.advance(by: check)
        XCTAssertEqual(try webSocket.readFrames().last?.opcode, TestFrame.closeOpcode)
    }
}
