import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

/// Engine.IO v3 sessions under `allowEIO3`, as engine.io's `lib/server.ts` (`verify`: any `EIO`
/// other than "4" is protocol 3) and `lib/socket.ts` (`onOpen`, `onPacket`, `resetPingTimeout`:
/// the client pings, the server answers with a pong and waits pingInterval + pingTimeout for the
/// next ping) handle them. The test server pings every 300 ms and waits 200 ms.
final class EngineIOv3SessionTests: XCTestCase {
    private func openV3WebSocket(_ test: TestServer) throws -> (TestConnection, String) {
        let connection = try test.connect()
        let response = try XCTUnwrap(connection.upgrade("/engine.io/?EIO=3&transport=websocket"))
        XCTAssertEqual(response.status, 101)
        let frames = try connection.readTexts()
        XCTAssertEqual(frames.count, 1)
        let sid = try XCTUnwrap(TestServer.openPacket(try XCTUnwrap(frames.first))["sid"] as? String)
        return (connection, sid)
    }

    func testRefusedWithoutAllowEIO3() throws {
        let test = TestServer()
        for uri in ["/engine.io/?EIO=3&transport=polling", "/engine.io/?transport=polling"] {
            let response = try XCTUnwrap(try test.connect().request("GET", uri))
            XCTAssertEqual(response.status, 400)
            XCTAssertEqual(try TestServer.errorBody(response).message, "Unsupported protocol version")
        }
    }

    func testAnyVersionButFourIsThreeWithAllowEIO3() throws {
        let test = TestServer { $0.allowEIO3 = true }
        let response = try XCTUnwrap(try test.connect().request("GET", "/engine.io/?transport=polling&b64=1"))
        XCTAssertEqual(response.status, 200)
        // A text payload: the open packet behind its UTF-16 length.
        let colon = try XCTUnwrap(response.body.firstIndex(of: ":"))
        let packet = response.body[response.body.index(after: colon)...]
        XCTAssertEqual(Int(response.body[..<colon]), packet.utf16.count)
        XCTAssertNotNil(try TestServer.openPacket(String(packet))["sid"])
        XCTAssertEqual(test.delegate.opened.map(\.version), [.v3(supportsBinary: false)])
    }

    func testTheClientPingsAndTheServerAnswers() throws {
        let test = TestServer { $0.allowEIO3 = true }
        let (connection, sid) = try self.openV3WebSocket(test)
        // The server never pings: only the client's silence for 500 ms closes the session.
        test.advance(by: .milliseconds(400))
        XCTAssertEqual(try connection.readTexts(), [])
        try connection.sendText("2")
        XCTAssertEqual(try connection.readTexts(), ["3"])
        test.advance(by: .milliseconds(499))
        XCTAssertTrue(connection.isActive)
        test.advance(by: .milliseconds(1))
        XCTAssertFalse(connection.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.sid), [sid])
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.pingTimeout])
    }

    func testAPongFromAV3ClientIsAnError() throws {
        let test = TestServer { $0.allowEIO3 = true }
        let (connection, _) = try self.openV3WebSocket(test)
        try connection.sendText("3")
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        XCTAssertFalse(connection.isActive)
    }

    func testBinaryFramesCarryTheMessageType() throws {
        let test = TestServer { $0.allowEIO3 = true }
        let (connection, _) = try self.openV3WebSocket(test)
        // The delegate echoes what it gets: the type byte goes in front again on the way out.
        try connection.sendFrame(opcode: TestFrame.binaryOpcode, payload: [4, 0xAB])
        XCTAssertEqual(test.delegate.binaries, [[0xAB]])
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.binaryOpcode, payload: [4, 0xAB])])
    }

    func testVersionFourSessionsAreUnchanged() throws {
        let test = TestServer { $0.allowEIO3 = true }
        let (connection, _) = try test.openWebSocketSession()
        XCTAssertEqual(test.delegate.opened.map(\.version), [.v4])
        test.advance(by: .milliseconds(300))
        XCTAssertEqual(try connection.readTexts(), ["2"])
        try connection.sendText("2")
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
    }
}
