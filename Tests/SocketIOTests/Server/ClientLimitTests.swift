import EngineIO
import EngineIOTestSupport
import NIOCore
import SidecastJSON
import XCTest

@testable import SocketIO

/// What one client can make the server hold is bounded: acks owed to it and CONNECTs waiting
/// for authorization (PROTOCOL.md §11).
final class ClientLimitTests: XCTestCase {
    func testOwedAcksPastTheLimitForgetTheOldest() throws {
        let test = SocketIOTestServer { $0.maxAcksOwedToClient = 3 }
        let (client, socket) = try test.connectedClient()
        for ackID in 0..<5 {
            try client.send(#"2\#(ackID)["ask"]"#)
        }
        XCTAssertEqual(test.sink.events.map(\.ackID), [0, 1, 2, 3, 4], "every event still reaches the sink")
        XCTAssertEqual(socket.acksOwedCount, 3, "the table holds at most the limit")
        XCTAssertFalse(socket.sendAck(0, []), "the oldest were forgotten")
        XCTAssertFalse(socket.sendAck(1, []))
        XCTAssertTrue(socket.sendAck(3, ["three"]), "answers need not come in order")
        XCTAssertTrue(socket.sendAck(2, ["two"]))
        XCTAssertTrue(socket.sendAck(4, ["four"]))
        XCTAssertEqual(socket.acksOwedCount, 0)
        XCTAssertEqual(try client.readTexts(), [#"433["three"]"#, #"432["two"]"#, #"434["four"]"#])
        XCTAssertTrue(socket.isConnected, "reaching the limit does not disconnect")
    }

    func testManyUnansweredAcksKeepTheTableAtTheDefaultLimit() throws {
        let test = SocketIOTestServer()
        let limit = test.server.configuration.maxAcksOwedToClient
        XCTAssertEqual(limit, 1000)
        let (client, socket) = try test.connectedClient()
        for ackID in 0..<(limit + 500) {
            try client.send(#"2\#(ackID)["ask"]"#)
        }
        XCTAssertEqual(socket.acksOwedCount, limit)
        XCTAssertFalse(socket.sendAck(499, []))
        XCTAssertTrue(socket.sendAck(500, []))
        XCTAssertTrue(socket.sendAck(limit + 499, []))
    }

    func testRepeatedAckIDIsOwedOnce() throws {
        let test = SocketIOTestServer { $0.maxAcksOwedToClient = 2 }
        let (client, socket) = try test.connectedClient()
        for _ in 0..<4 {
            try client.send(#"27["again"]"#)
        }
        XCTAssertEqual(socket.acksOwedCount, 1)
        XCTAssertTrue(socket.sendAck(7, []))
        XCTAssertFalse(socket.sendAck(7, []), "answered at most once, however often it was asked")
    }

    func testConnectsPastThePendingLimitAreRefusedAndTheOthersCarryOn() throws {
        let test = SocketIOTestServer { $0.maxPendingConnects = 2 }
        let sessions = SessionRecorder(test.server)
        test.engine.server.delegate = sessions
        test.sink.namespaces = ["/a", "/b", "/c"]
        test.sink.decide = { _ in nil }
        let client = try test.client()
        try client.send("0/a,")
        try client.send("0/b,")
        try client.send("0/c,")
        XCTAssertEqual(try client.readTexts(), [#"44/c,{"message":"too many pending connects"}"#])
        XCTAssertEqual(test.sink.requests.map(\.namespace), ["/a", "/b"], "the refused CONNECT asks nobody")
        let connection = try XCTUnwrap(sessions.opened.first?.userData as? SocketIOConnection)
        XCTAssertEqual(connection.pendingConnectCount, 2)

        test.sink.pendingDecisions.removeFirst()(.accept(data: nil))
        XCTAssertEqual(connection.pendingConnectCount, 1)
        XCTAssertEqual(try client.readTexts().map { $0.hasPrefix("40/a,") }, [true])
        try client.send("0/c,")
        XCTAssertEqual(test.sink.requests.map(\.namespace), ["/a", "/b", "/c"], "a freed slot takes a CONNECT again")
        XCTAssertEqual(connection.pendingConnectCount, 2)
        XCTAssertTrue(client.connection.isActive)
    }
}

/// Passes everything on to the Socket.IO server and keeps the sessions it saw open, so a test
/// can look at a connection before it has any socket.
private final class SessionRecorder: EngineIOServerDelegate {
    let server: SocketIOServer
    var opened: [EngineIOSession] = []

    init(_ server: SocketIOServer) {
        self.server = server
    }

    func sessionDidOpen(_ session: EngineIOSession) {
        opened.append(session)
        server.sessionDidOpen(session)
    }

    func session(_ session: EngineIOSession, didReceiveText text: ByteBuffer) {
        server.session(session, didReceiveText: text)
    }

    func session(_ session: EngineIOSession, didReceiveBinary data: ByteBuffer) {
        server.session(session, didReceiveBinary: data)
    }

    func session(_ session: EngineIOSession, didCloseWith reason: EngineIOCloseReason) {
        server.session(session, didCloseWith: reason)
    }
}
