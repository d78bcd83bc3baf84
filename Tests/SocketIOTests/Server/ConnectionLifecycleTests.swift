import EngineIO
import EngineIOTestSupport
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Joining and leaving namespaces over a real Engine.IO session: CONNECT, CONNECT_ERROR,
/// DISCONNECT either way, malformed packets and the connect timeout.
final class ConnectionLifecycleTests: XCTestCase {
    func testConnectToMainNamespaceAnswersWithSocketIDAndTellsTheSink() throws {
        let test = SocketIOTestServer()
        let client = try test.client()
        try client.send(#"0{"token":"abc"}"#)
        let texts = try client.readTexts()
        let socket = try XCTUnwrap(test.sink.connected.first)
        XCTAssertEqual(texts, [#"40{"sid":"\#(socket.id)"}"#])
        XCTAssertEqual(socket.id.utf8.count, RandomID.socketIDLength)
        XCTAssertNotEqual(socket.id, client.sid)
        XCTAssertEqual(socket.namespace.name, "/")
        XCTAssertEqual(socket.auth, ["token": "abc"])
        XCTAssertEqual(test.sink.requests.map(\.socketID), [socket.id])
        XCTAssertTrue(socket.rooms.contains(socket.id), "a socket starts in its own-id room")
    }

    func testConnectToUnknownNamespaceIsRefused() throws {
        let test = SocketIOTestServer()
        let client = try test.client()
        try client.send("0/x,")
        XCTAssertEqual(try client.readTexts(), [#"44/x,{"message":"Invalid namespace"}"#])
        XCTAssertTrue(test.sink.requests.isEmpty, "no authorization asked for a namespace nobody serves")
        XCTAssertTrue(test.sink.connected.isEmpty)
        XCTAssertTrue(client.connection.isActive, "a refused CONNECT leaves the session open")
    }

    func testRejectedConnectCarriesMessageAndData() throws {
        let test = SocketIOTestServer()
        test.sink.decide = { _ in .reject(message: "not allowed", data: ["code": 7]) }
        let client = try test.client()
        try client.send("0")
        XCTAssertEqual(try client.readTexts(), [#"44{"message":"not allowed","data":{"code":7}}"#])
        XCTAssertTrue(test.sink.connected.isEmpty)
        XCTAssertNil(test.server.namespaces["/"], "a rejected socket creates no namespace")
    }

    func testTwoNamespacesOnOneSessionHaveDistinctSockets() throws {
        let test = SocketIOTestServer()
        test.sink.namespaces = ["/", "/admin"]
        let client = try test.client()
        let main = try client.connect("/")
        let admin = try client.connect("/admin")
        XCTAssertNotEqual(main, admin)
        XCTAssertEqual(test.engine.server.sessionCount, 1)
        XCTAssertEqual(test.server.socket(id: admin, namespace: "/admin")?.session.id, client.sid)
        XCTAssertNil(test.server.socket(id: admin, namespace: "/"))
    }

    func testHeldDecisionIsAbandonedWhenTheClientLeaves() throws {
        let test = SocketIOTestServer()
        test.sink.decide = { _ in nil }
        let client = try test.client()
        try client.send("0")
        let request = try XCTUnwrap(test.sink.requests.first)
        try client.connection.sendFrame(opcode: TestFrame.closeOpcode, payload: [0x03, 0xE8])
        XCTAssertEqual(test.sink.abandoned, [request.socketID])
        test.sink.pendingDecisions.first?(.accept(data: nil))
        XCTAssertTrue(test.sink.connected.isEmpty, "a decision after the client left is ignored")
    }

    func testClientDisconnectLeavesTheSessionOpen() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        try client.send("1")
        XCTAssertEqual(test.sink.disconnects.map(\.socketID), [socket.id])
        XCTAssertEqual(test.sink.disconnects.first?.reason, .clientNamespaceDisconnect)
        XCTAssertFalse(socket.isConnected)
        XCTAssertEqual(test.server.namespaces["/"]?.sockets.count, 0)
        XCTAssertTrue(client.connection.isActive)
        XCTAssertEqual(test.engine.server.sessionCount, 1)
        let again = try client.connect()
        XCTAssertNotEqual(again, socket.id, "a new CONNECT makes a new socket")
    }

    func testServerDisconnectSendsDisconnectPacketAndKeepsTheSession() throws {
        let test = SocketIOTestServer()
        test.sink.namespaces = ["/", "/chat"]
        let client = try test.client()
        _ = try client.connect("/")
        let chatID = try client.connect("/chat")
        let chat = try XCTUnwrap(test.server.socket(id: chatID, namespace: "/chat"))
        chat.disconnect(close: false)
        XCTAssertEqual(try client.readTexts(), ["41/chat,"])
        XCTAssertEqual(test.sink.disconnects.map(\.reason), [.serverNamespaceDisconnect])
        XCTAssertTrue(client.connection.isActive)
        XCTAssertEqual(test.server.namespaces["/"]?.sockets.count, 1)
    }

    func testServerDisconnectWithCloseClosesTheWholeConnection() throws {
        let test = SocketIOTestServer()
        test.sink.namespaces = ["/", "/chat"]
        let client = try test.client()
        let mainID = try client.connect("/")
        let chatID = try client.connect("/chat")
        try XCTUnwrap(test.server.socket(id: chatID, namespace: "/chat")).disconnect(close: true)
        test.loop.run()
        XCTAssertEqual(test.sink.disconnects.map(\.socketID), [chatID, mainID])
        XCTAssertEqual(test.sink.disconnects.map(\.reason), [.serverNamespaceDisconnect, .forcedClose])
        XCTAssertEqual(test.engine.server.sessionCount, 0)
        let frames = try client.connection.readFrames()
        XCTAssertFalse(frames.contains { $0.text == "41/chat," }, "close sends no DISCONNECT packet")
        XCTAssertEqual(frames.last?.opcode, TestFrame.closeOpcode)
    }

    func testMalformedPacketsCloseTheConnectionWithParseError() throws {
        for packet in ["abc", "2{}"] {
            let test = SocketIOTestServer()
            let (client, socket) = try test.connectedClient()
            try client.send(packet)
            XCTAssertEqual(test.sink.disconnects.map(\.socketID), [socket.id], packet)
            XCTAssertEqual(test.sink.disconnects.first?.reason, .parseError, packet)
            XCTAssertTrue(test.sink.events.isEmpty, packet)
            XCTAssertEqual(test.engine.server.sessionCount, 0, packet)
        }
    }

    func testSessionThatJoinsNoNamespaceInTimeIsClosed() throws {
        let test = SocketIOTestServer { $0.connectTimeout = .milliseconds(100) }
        let idle = try test.client()
        let (joined, _) = try test.connectedClient()
        test.loop.advanceTime(by: .milliseconds(99))
        XCTAssertEqual(test.engine.server.sessionCount, 2)
        test.loop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(test.engine.server.sessionCount, 1)
        XCTAssertEqual(try idle.connection.readFrames().last?.opcode, TestFrame.closeOpcode)
        XCTAssertTrue(joined.connection.isActive)
        XCTAssertTrue(test.sink.disconnects.isEmpty)
    }
}
