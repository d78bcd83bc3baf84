import EngineIO
import EngineIOTestSupport
import Logging
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// The Socket.IO v4 protocol that Engine.IO v3 clients speak, as socket.io serves it with
/// `allowEIO3`: `lib/index.ts` (`onconnection` joins a protocol-3 client to "/"), `lib/client.ts`
/// (`ondecoded`: the query of a CONNECT's namespace is its auth; `connect`: "Invalid namespace"
/// stays an object), `lib/socket.ts` (`_onconnect`: CONNECT without data) and
/// `lib/namespace.ts` (`_add`: a refusal is `err.data || err.message`).
final class SocketIOv4ProtocolTests: XCTestCase {
    private var engine: TestServer!
    private var server: SocketIOServer!
    private let sink = RecordingSink()

    override func setUp() {
        self.engine = TestServer { $0.allowEIO3 = true }
        var logger = Logger(label: "socket.io-test")
        logger.logLevel = .critical
        self.server = SocketIOServer(configuration: SocketIOServerConfiguration(), eventLoop: self.engine.loop, logger: logger)
        self.server.sink = self.sink
        self.engine.server.delegate = self.server
        self.sink.namespaces = ["/", "/chat"]
    }

    /// A v3 WebSocket client, past its open packet.
    private func v3Client() throws -> TestConnection {
        let connection = try self.engine.connect()
        XCTAssertEqual(try XCTUnwrap(connection.upgrade("/engine.io/?EIO=3&transport=websocket")).status, 101)
        let texts = try connection.readTexts()
        XCTAssertEqual(texts.count, 2, "\(texts)")
        XCTAssertTrue(texts.first?.hasPrefix("0") == true)
        // "/" is joined unasked, and its CONNECT carries no data.
        XCTAssertEqual(texts.last, "40")
        return connection
    }

    func testMainNamespaceIsJoinedOnHandshakeWithEmptyAuth() throws {
        let connection = try self.v3Client()
        XCTAssertEqual(self.sink.requests.map(\.namespace), ["/"])
        XCTAssertEqual(self.sink.requests.first?.auth, [:])
        XCTAssertEqual(self.sink.connected.count, 1)
        try connection.sendText(#"42["hi",1]"#)
        XCTAssertEqual(self.sink.events.map(\.name), ["hi"])
        XCTAssertEqual(self.sink.events.first?.args, [1])
    }

    func testTheNamespaceQueryIsTheAuth() throws {
        let connection = try self.v3Client()
        try connection.sendText("40/chat?token=a%20b&x=1,")
        XCTAssertEqual(try connection.readTexts(), ["40/chat,"])
        XCTAssertEqual(self.sink.requests.last?.namespace, "/chat")
        XCTAssertEqual(self.sink.requests.last?.auth, ["token": "a b", "x": "1"])
        // Later packets name the namespace without the query, or with it: the socket is found.
        try connection.sendText(#"42/chat,["one"]"#)
        try connection.sendText(#"42/chat?token=a,["two"]"#)
        XCTAssertEqual(self.sink.events.map(\.name), ["one", "two"])
        XCTAssertEqual(self.sink.events.map(\.socket.namespace.name), ["/chat", "/chat"])
    }

    func testRefusalsAreStringsOrTheirData() throws {
        let connection = try self.v3Client()
        self.sink.decide = { _ in .reject(message: "no entry", data: nil) }
        try connection.sendText("40/chat,")
        XCTAssertEqual(try connection.readTexts(), [#"44/chat,"no entry""#])
        self.sink.decide = { _ in .reject(message: "no entry", data: ["code": 7]) }
        try connection.sendText("40/chat,")
        XCTAssertEqual(try connection.readTexts(), [#"44/chat,{"code":7}"#])
        // Node's `Client.connect` answers an unknown namespace with an object whatever the protocol.
        try connection.sendText("40/nowhere,")
        XCTAssertEqual(try connection.readTexts(), [#"44/nowhere,{"message":"Invalid namespace"}"#])
    }

    func testVersionFourClientsAreUnchanged() throws {
        let (connection, _) = try self.engine.openWebSocketSession()
        XCTAssertEqual(try connection.readTexts(), [], "no CONNECT before the client asks")
        try connection.sendText("40/chat?x=1,")
        XCTAssertEqual(try connection.readTexts(), [#"44/chat?x=1,{"message":"Invalid namespace"}"#])
    }
}
