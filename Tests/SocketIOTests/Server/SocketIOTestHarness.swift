import EngineIO
import EngineIOTestSupport
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import SidecastJSON
import SocketIO
import XCTest

/// Stands in for the bridge: serves the namespaces it is told to, decides connects with
/// `decide` (nil holds the decision in `pendingDecisions`) and records everything.
final class RecordingSink: SocketEventSink {
    struct Event {
        var socket: SocketIOSocket
        var name: String
        var args: [JSONValue]
        var ackID: Int?
    }

    var namespaces: Set<String> = ["/"]
    var decide: (ConnectRequest) -> ConnectDecision? = { _ in .accept(data: nil) }
    var requests: [ConnectRequest] = []
    var pendingDecisions: [(ConnectDecision) -> Void] = []
    var abandoned: [String] = []
    var connected: [SocketIOSocket] = []
    var events: [Event] = []
    var disconnects: [(socketID: String, reason: DisconnectReason)] = []

    func namespaceExists(_ namespace: String) -> Bool {
        self.namespaces.contains(namespace)
    }

    func authorize(_ request: ConnectRequest, decide: @escaping (ConnectDecision) -> Void) {
        self.requests.append(request)
        if let decision = self.decide(request) {
            decide(decision)
        } else {
            self.pendingDecisions.append(decide)
        }
    }

    func authorizationAbandoned(socketID: String, namespace: String) {
        self.abandoned.append(socketID)
    }

    func socketDidConnect(_ socket: SocketIOSocket) {
        self.connected.append(socket)
    }

    func socket(_ socket: SocketIOSocket, didReceive event: SocketIOEvent) {
        self.events.append(Event(socket: socket, name: event.name, args: event.args, ackID: event.ackID))
    }

    func socket(_ socket: SocketIOSocket, didDisconnectWith reason: DisconnectReason) {
        self.disconnects.append((socket.id, reason))
    }
}

/// An Engine.IO server with a Socket.IO server as its delegate, on one embedded loop.
final class SocketIOTestServer {
    let engine: TestServer
    let server: SocketIOServer
    let sink = RecordingSink()

    init(_ configure: (inout SocketIOServerConfiguration) -> Void = { _ in }) {
        self.engine = TestServer()
        var configuration = SocketIOServerConfiguration()
        configure(&configuration)
        var logger = Logger(label: "socket.io-test")
        logger.logLevel = .critical
        self.server = SocketIOServer(configuration: configuration, eventLoop: self.engine.loop, logger: logger)
        self.server.sink = self.sink
        self.engine.server.delegate = self.server
    }

    var loop: EmbeddedEventLoop { self.engine.loop }

    /// A client with an open WebSocket session that joined no namespace yet.
    func client() throws -> SocketIOTestClient {
        let (connection, sid) = try self.engine.openWebSocketSession()
        return SocketIOTestClient(connection: connection, sid: sid)
    }

    /// A client connected to `namespace`, with the socket the server made for it.
    func connectedClient(_ namespace: String = "/") throws -> (SocketIOTestClient, SocketIOSocket) {
        let client = try self.client()
        let socketID = try client.connect(namespace)
        let socket = try XCTUnwrap(self.server.socket(id: socketID, namespace: namespace))
        return (client, socket)
    }
}

/// A WebSocket client speaking Socket.IO packets as Engine.IO "4" messages.
final class SocketIOTestClient {
    let connection: TestConnection
    /// The Engine.IO session id.
    let sid: String

    init(connection: TestConnection, sid: String) {
        self.connection = connection
        self.sid = sid
    }

    /// Sends one Socket.IO packet, e.g. `0` or `21["hi"]`.
    func send(_ packet: String) throws {
        try self.connection.sendText("4" + packet)
    }

    /// Text frames since the last read, Engine.IO pings left out.
    func readTexts() throws -> [String] {
        try self.connection.readTexts().filter { $0 != "2" }
    }

    /// Sends CONNECT and returns the socket id from the server's answer.
    func connect(_ namespace: String = "/", auth: String = "") throws -> String {
        let prefix = namespace == "/" ? "" : namespace + ","
        try self.send("0" + prefix + auth)
        let texts = try self.readTexts()
        XCTAssertEqual(texts.count, 1, "\(texts)")
        let text = try XCTUnwrap(texts.first)
        XCTAssertTrue(text.hasPrefix("40" + prefix), text)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8.dropFirst(2 + prefix.utf8.count)))
        return try XCTUnwrap((object as? [String: Any])?["sid"] as? String)
    }
}
