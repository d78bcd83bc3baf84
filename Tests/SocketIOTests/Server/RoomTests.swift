import EngineIOTestSupport
import NIOCore
import SidecastJSON
import SocketIO
import XCTest

/// Rooms of one namespace: membership, `sockets(matching:)` (one-room fast path, own-id rooms,
/// `except`) and broadcasts that reach exactly the selected clients.
/// Three clients connected to "/", with the namespace's room creations and deletions recorded.
private final class Fixture {
    let test = SocketIOTestServer()
    var clients: [SocketIOTestClient] = []
    var sockets: [SocketIOSocket] = []
    var roomChanges: [String] = []

    init() throws {
        self.test.server.namespace(named: "/").onRoomChange = { [unowned self] room, exists in
            self.roomChanges.append((exists ? "+" : "-") + room)
        }
        for _ in 0..<3 {
            let (client, socket) = try self.test.connectedClient()
            self.clients.append(client)
            self.sockets.append(socket)
        }
        self.roomChanges = []
    }

    func ids(_ rooms: Set<String>, except: Set<String> = []) -> Set<String> {
        let namespace = self.test.server.namespace(named: "/")
        return Set(namespace.sockets(matching: BroadcastOptions(namespace: "/", rooms: rooms, except: except)).map(\.id))
    }
}

final class RoomTests: XCTestCase {
    func testJoinAndLeaveUpdateRoomsAndReportCreationAndDeletion() throws {
        let fixture = try Fixture()
        let (a, b, _) = (fixture.sockets[0], fixture.sockets[1], fixture.sockets[2])
        a.join("game")
        b.join("game")
        a.join("game")
        XCTAssertEqual(fixture.test.server.namespace(named: "/").rooms["game"], [a.id, b.id])
        XCTAssertEqual(a.rooms, [a.id, "game"])
        XCTAssertEqual(fixture.test.server.allRooms(namespace: "/"), Set(fixture.sockets.map(\.id) + ["game"]))
        a.leave("game")
        b.leave("game")
        XCTAssertNil(fixture.test.server.namespace(named: "/").rooms["game"])
        XCTAssertEqual(fixture.roomChanges, ["+game", "-game"])
    }

    func testOneRoomFastPathSelectsMembers() throws {
        let fixture = try Fixture()
        let (a, b, c) = (fixture.sockets[0], fixture.sockets[1], fixture.sockets[2])
        a.join("game")
        b.join("game")
        XCTAssertEqual(fixture.ids(["game"]), [a.id, b.id])
        XCTAssertEqual(fixture.ids(["nobody"]), [])
        XCTAssertEqual(fixture.ids([c.id]), [c.id], "a socket's id is a room holding it")
        XCTAssertEqual(fixture.ids([]), Set(fixture.sockets.map(\.id)))
    }

    func testRoomNamedAfterASocketHoldsItAndThoseWhoJoinedIt() throws {
        let fixture = try Fixture()
        let (a, b, _) = (fixture.sockets[0], fixture.sockets[1], fixture.sockets[2])
        b.join(a.id)
        XCTAssertEqual(fixture.ids([a.id]), [a.id, b.id])
        XCTAssertEqual(fixture.test.server.namespace(named: "/").rooms[a.id], [a.id, b.id])
        a.leave(a.id)
        XCTAssertEqual(fixture.ids([a.id]), [b.id])
        XCTAssertFalse(a.rooms.contains(a.id))
        b.leave(a.id)
        XCTAssertEqual(fixture.ids([a.id]), [])
        XCTAssertEqual(fixture.roomChanges, ["-" + a.id], "the room existed until its last member left")
        a.join(a.id)
        XCTAssertEqual(fixture.ids([a.id]), [a.id])
    }

    func testExceptRemovesMembersOfExcludedRoomsAndSocketIDs() throws {
        let fixture = try Fixture()
        let (a, b, c) = (fixture.sockets[0], fixture.sockets[1], fixture.sockets[2])
        a.join("game")
        b.join("game")
        c.join("muted")
        XCTAssertEqual(fixture.ids(["game"], except: [b.id]), [a.id])
        XCTAssertEqual(fixture.ids([], except: ["game"]), [c.id])
        XCTAssertEqual(fixture.ids(["game", "muted"], except: ["nobody"]), [a.id, b.id, c.id])
        XCTAssertEqual(fixture.ids(["game", a.id], except: []), [a.id, b.id], "a socket in two rooms is chosen once")
        XCTAssertEqual(fixture.ids([], except: ["game", "muted"]), [])
    }

    func testBroadcastReachesExactlyTheSelectedClients() throws {
        let fixture = try Fixture()
        let (a, b, _) = (fixture.sockets[0], fixture.sockets[1], fixture.sockets[2])
        a.join("game")
        b.join("game")
        fixture.test.server.broadcast(
            SocketIOPacket(type: .event, data: ["score", 3]),
            options: BroadcastOptions(namespace: "/", rooms: ["game"], except: [b.id])
        )
        XCTAssertEqual(try fixture.clients[0].readTexts(), [#"42["score",3]"#])
        XCTAssertEqual(try fixture.clients[1].readTexts(), [])
        XCTAssertEqual(try fixture.clients[2].readTexts(), [])
    }

    func testBroadcastToSeveralClientsGivesEachTheSameFrames() throws {
        let fixture = try Fixture()
        let (a, b) = (fixture.sockets[0], fixture.sockets[1])
        a.join("game")
        b.join("game")
        let long = String(repeating: "x", count: 200)
        fixture.test.server.broadcast(
            SocketIOPacket(type: .event, data: ["state", .string(long), .binary(ByteBuffer(bytes: [7, 8, 9]))]),
            options: BroadcastOptions(namespace: "/", rooms: ["game"])
        )
        for client in fixture.clients[0...1] {
            let frames = try client.connection.readFrames()
            XCTAssertEqual(frames.map(\.opcode), [TestFrame.textOpcode, TestFrame.binaryOpcode])
            XCTAssertEqual(frames.first?.text, #"451-["state",""# + long + #"",{"_placeholder":true,"num":0}]"#)
            XCTAssertEqual(frames.last?.payload, [7, 8, 9])
        }
        XCTAssertEqual(try fixture.clients[2].readTexts(), [])
    }

    func testBroadcastWithAckCollectsEveryAnswerUntilCancelled() throws {
        let fixture = try Fixture()
        var answers: [String: [JSONValue]] = [:]
        let (count, cancel) = fixture.test.server.broadcastWithAck(
            SocketIOPacket(type: .event, data: ["poll"]),
            options: BroadcastOptions(namespace: "/")
        ) { socketID, args in answers[socketID] = args }
        XCTAssertEqual(count, 3)
        for client in fixture.clients {
            XCTAssertEqual(try client.readTexts(), [#"420["poll"]"#], "one ack id shared by every recipient")
        }
        try fixture.clients[0].send(#"30["yes"]"#)
        try fixture.clients[1].send(#"30["no"]"#)
        cancel()
        try fixture.clients[2].send(#"30["late"]"#)
        XCTAssertEqual(answers, [fixture.sockets[0].id: ["yes"], fixture.sockets[1].id: ["no"]])
    }

    func testDisconnectedSocketLeavesItsRooms() throws {
        let fixture = try Fixture()
        let a = fixture.sockets[0]
        a.join("game")
        try fixture.clients[0].send("1")
        XCTAssertNil(fixture.test.server.namespace(named: "/").rooms["game"])
        XCTAssertNil(fixture.test.server.namespace(named: "/").rooms[a.id])
        XCTAssertEqual(fixture.roomChanges, ["+game", "-" + a.id, "-game"])
    }
}
