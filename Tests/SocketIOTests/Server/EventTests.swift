import EngineIOTestSupport
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Events and acknowledgements both ways, binary attachments and the slow-client limit.
final class EventTests: XCTestCase {
    func testEventWithAckIDReachesTheSinkAndIsAnsweredOnce() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        try client.send(#"27["hello",1,{"a":true}]"#)
        let event = try XCTUnwrap(test.sink.events.first)
        XCTAssertTrue(event.socket === socket)
        XCTAssertEqual(event.name, "hello")
        XCTAssertEqual(event.args, [1, ["a": true]])
        XCTAssertEqual(event.ackID, 7)
        XCTAssertTrue(socket.sendAck(7, ["ok"]))
        XCTAssertFalse(socket.sendAck(7, ["again"]), "an ack is answered at most once")
        XCTAssertFalse(socket.sendAck(8, []), "nobody asked for ack 8")
        XCTAssertEqual(try client.readTexts(), [#"437["ok"]"#])
    }

    func testEventWithoutAckIDOwesNoAnswer() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        try client.send(#"2["note"]"#)
        XCTAssertEqual(test.sink.events.map(\.name), ["note"])
        XCTAssertNil(test.sink.events.first?.ackID)
        XCTAssertEqual(test.sink.events.first?.args, [])
        XCTAssertFalse(socket.sendAck(0, []))
        XCTAssertEqual(try client.readTexts(), [])
    }

    func testServerEmitGetsTheClientsAck() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        var results: [Result<[JSONValue], SocketIOSocket.AckFailure>] = []
        socket.emit("question", [42], timeout: .seconds(5)) { results.append($0) }
        XCTAssertEqual(try client.readTexts(), [#"420["question",42]"#])
        try client.send(#"30["answer"]"#)
        XCTAssertEqual(results.count, 1)
        XCTAssertEqual(try results.first?.get(), ["answer"])
        try client.send(#"30["late"]"#)
        XCTAssertEqual(results.count, 1, "a second answer to the same id is ignored")
    }

    func testServerEmitTimesOutWithoutAnAck() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        var failures: [SocketIOSocket.AckFailure] = []
        socket.emit("question", [], timeout: .milliseconds(100)) { result in
            if case .failure(let failure) = result { failures.append(failure) }
        }
        XCTAssertEqual(try client.readTexts(), [#"420["question"]"#])
        test.loop.advanceTime(by: .milliseconds(99))
        XCTAssertEqual(failures, [])
        test.loop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(failures, [.timeout])
        try client.send(#"30[]"#)
        XCTAssertEqual(failures, [.timeout], "an answer after the timeout is ignored")
    }

    func testPendingAckFailsWhenTheSocketDisconnects() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        var failures: [SocketIOSocket.AckFailure] = []
        socket.emit("question", [], timeout: .seconds(5)) { result in
            if case .failure(let failure) = result { failures.append(failure) }
        }
        try client.send("1")
        XCTAssertEqual(failures, [.disconnected])
        socket.emit("question", [], timeout: .seconds(5)) { result in
            if case .failure(let failure) = result { failures.append(failure) }
        }
        XCTAssertEqual(failures, [.disconnected, .disconnected], "a disconnected socket fails at once")
    }

    func testBinaryEventWithOneAttachmentArrivesAsBinary() throws {
        let test = SocketIOTestServer()
        let (client, _) = try test.connectedClient()
        try client.send(#"51-["file",{"_placeholder":true,"num":0}]"#)
        XCTAssertTrue(test.sink.events.isEmpty, "the event waits for its attachment")
        try client.connection.sendFrame(opcode: TestFrame.binaryOpcode, payload: [1, 2, 3])
        let event = try XCTUnwrap(test.sink.events.first)
        XCTAssertEqual(event.name, "file")
        XCTAssertEqual(event.args, [.binary(ByteBuffer(bytes: [1, 2, 3]))])
    }

    func testServerEmitOfBinarySendsAnAttachmentFrame() throws {
        let test = SocketIOTestServer()
        let (client, socket) = try test.connectedClient()
        socket.emit("file", [.binary(ByteBuffer(bytes: [9, 8]))])
        let frames = try client.connection.readFrames()
        XCTAssertEqual(frames.map(\.opcode), [TestFrame.textOpcode, TestFrame.binaryOpcode])
        XCTAssertEqual(frames.first?.text, #"451-["file",{"_placeholder":true,"num":0}]"#)
        XCTAssertEqual(frames.last?.payload, [9, 8])
    }

    func testClientOverTheBufferLimitIsDisconnectedAndVolatilePacketsAreDropped() throws {
        let test = SocketIOTestServer { $0.maxBufferedBytes = 16 }
        let (client, socket) = try test.connectedClient()
        // Writes are flushed once per loop round: until the loop runs, they count as buffered.
        socket.emit("big", [.string(String(repeating: "x", count: 32))])
        test.server.broadcast(
            SocketIOPacket(type: .event, data: ["tick"]),
            options: BroadcastOptions(namespace: "/", volatile: true)
        )
        XCTAssertEqual(test.server.droppedVolatilePackets, 1)
        XCTAssertEqual(test.server.slowClientDisconnects, 0)
        XCTAssertTrue(socket.isConnected)
        socket.emit("more", [])
        XCTAssertEqual(test.server.slowClientDisconnects, 1)
        XCTAssertEqual(test.sink.disconnects.map(\.reason), [.forcedClose])
        let frames = try client.connection.readFrames()
        XCTAssertEqual(frames.filter { $0.opcode == TestFrame.textOpcode }.map(\.text), [
            #"42["big","\#(String(repeating: "x", count: 32))"]"#, "41",
        ], "the client reads what was queued, then why it was dropped")
        XCTAssertEqual(frames.last?.opcode, TestFrame.closeOpcode)
        XCTAssertEqual(test.engine.server.sessionCount, 0)
    }
}
