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

    /// A broadcast walks its recipients with a few of them prepared ahead (`BroadcastTargets`):
    /// rooms shorter and longer than that window, each kind of selection, each client once.
    func testBroadcastsOfEverySizeReachEachRecipientOnce() throws {
        for size in 0...6 {
            let test = SocketIOTestServer()
            var members: [SocketIOTestClient] = []
            for _ in 0..<size {
                let (client, socket) = try test.connectedClient()
                socket.join("game")
                members.append(client)
            }
            let (outsider, outsiderSocket) = try test.connectedClient()
            outsiderSocket.join("other")
            let selections: [(BroadcastOptions, reachesOutsider: Bool)] = [
                (BroadcastOptions(namespace: "/", rooms: ["game"]), false),
                (BroadcastOptions(namespace: "/"), true),
                (BroadcastOptions(namespace: "/", rooms: ["game", "other"]), true),
                (BroadcastOptions(namespace: "/", except: ["other"]), false),
            ]
            for (options, reachesOutsider) in selections {
                test.server.broadcast(SocketIOPacket(type: .event, data: ["tick", .int(Int64(size))]), options: options)
                for member in members {
                    XCTAssertEqual(try member.readTexts(), ["42[\"tick\",\(size)]"], "\(size) members, \(options)")
                }
                XCTAssertEqual(try outsider.readTexts(), reachesOutsider ? ["42[\"tick\",\(size)]"] : [], "\(size) members, \(options)")
            }
        }
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

    func testSocketInSeveralSelectedRoomsGetsOneCopy() throws {
        let fixture = try Fixture()
        let (a, b) = (fixture.sockets[0], fixture.sockets[1])
        a.join("game")
        b.join("game")
        b.join(a.id)
        fixture.test.server.broadcast(
            SocketIOPacket(type: .event, data: ["once"]),
            options: BroadcastOptions(namespace: "/", rooms: ["game", a.id])
        )
        XCTAssertEqual(try fixture.clients[0].readTexts(), [#"42["once"]"#], "in the room and in its own-id room")
        XCTAssertEqual(try fixture.clients[1].readTexts(), [#"42["once"]"#], "in the room and in a room named after a")
        XCTAssertEqual(try fixture.clients[2].readTexts(), [])
    }

    func testExceptLeavesOutMembersOfAnExcludedRoomAndItsOwner() throws {
        let fixture = try Fixture()
        let (a, b, c) = (fixture.sockets[0], fixture.sockets[1], fixture.sockets[2])
        a.join("game")
        b.join("game")
        c.join(a.id)
        fixture.test.server.broadcast(
            SocketIOPacket(type: .event, data: ["news"]),
            options: BroadcastOptions(namespace: "/", rooms: ["game", a.id], except: [a.id])
        )
        XCTAssertEqual(try fixture.clients[0].readTexts(), [])
        XCTAssertEqual(try fixture.clients[1].readTexts(), [#"42["news"]"#])
        XCTAssertEqual(try fixture.clients[2].readTexts(), [], "it joined the excluded room named after a")
    }

    func testRoomsKeepMembersBySocketNotByID() throws {
        let fixture = try Fixture()
        let a = fixture.sockets[0]
        a.join("game")
        try fixture.clients[0].send("1")
        // The client connects again; its new socket has a new id, and the old one left the room.
        let id = try fixture.clients[0].connect()
        let again = try XCTUnwrap(fixture.test.server.socket(id: id, namespace: "/"))
        XCTAssertFalse(again === a)
        XCTAssertNil(fixture.test.server.namespace(named: "/").rooms["game"])
        XCTAssertFalse(fixture.test.server.namespace(named: "/").hasMembers("game"))
        again.join("game")
        XCTAssertEqual(fixture.test.server.namespace(named: "/").rooms["game"], [id])
        XCTAssertTrue(fixture.test.server.namespace(named: "/").hasMembers("game"))
        XCTAssertTrue(fixture.test.server.namespace(named: "/").hasMembers(id), "its own-id room")
    }
}

/// Broadcasts that disconnect slow clients: the clients leave the room and the namespace while
/// the broadcast still goes through them.
final class BroadcastWhileLeavingTests: XCTestCase {
    /// Four clients in "game", the first and third over a 16-byte limit with a big emit not yet
    /// flushed (writes wait for the loop's round).
    private func slowAndFastClients(
        _ test: SocketIOTestServer
    ) throws -> (clients: [SocketIOTestClient], sockets: [SocketIOSocket]) {
        var clients: [SocketIOTestClient] = []
        var sockets: [SocketIOSocket] = []
        for _ in 0..<4 {
            let (client, socket) = try test.connectedClient()
            socket.join("game")
            clients.append(client)
            sockets.append(socket)
        }
        sockets[0].emit("big", [.string(String(repeating: "x", count: 32))])
        sockets[2].emit("big", [.string(String(repeating: "x", count: 32))])
        return (clients, sockets)
    }

    private func assertFastClientsGotTheEventAndSlowOnesWereDropped(
        _ test: SocketIOTestServer, _ clients: [SocketIOTestClient], _ sockets: [SocketIOSocket]
    ) throws {
        XCTAssertEqual(test.server.slowClientDisconnects, 2)
        XCTAssertEqual(test.sink.disconnects.map(\.socketID).sorted(), [sockets[0].id, sockets[2].id].sorted())
        XCTAssertEqual(test.server.namespace(named: "/").rooms["game"], [sockets[1].id, sockets[3].id])
        XCTAssertEqual(Set(test.server.namespace(named: "/").sockets.keys), [sockets[1].id, sockets[3].id])
        for index in [1, 3] {
            XCTAssertEqual(try clients[index].readTexts(), [#"42["tick"]"#])
        }
        for index in [0, 2] {
            let texts = try clients[index].connection.readFrames().filter { $0.opcode == TestFrame.textOpcode }.map(\.text)
            XCTAssertEqual(texts.last, "41", "a slow client reads why it was dropped, and no tick")
            XCTAssertFalse(texts.contains(#"42["tick"]"#))
        }
    }

    func testSlowClientsLeavingARoomDuringItsBroadcast() throws {
        let test = SocketIOTestServer { $0.maxBufferedBytes = 16 }
        let (clients, sockets) = try self.slowAndFastClients(test)
        test.server.broadcast(SocketIOPacket(type: .event, data: ["tick"]), options: BroadcastOptions(namespace: "/", rooms: ["game"]))
        try self.assertFastClientsGotTheEventAndSlowOnesWereDropped(test, clients, sockets)
    }

    func testSlowClientsLeavingTheNamespaceDuringABroadcastToEveryone() throws {
        let test = SocketIOTestServer { $0.maxBufferedBytes = 16 }
        let (clients, sockets) = try self.slowAndFastClients(test)
        test.server.broadcast(SocketIOPacket(type: .event, data: ["tick"]), options: BroadcastOptions(namespace: "/"))
        try self.assertFastClientsGotTheEventAndSlowOnesWereDropped(test, clients, sockets)
    }

    func testSlowClientsLeavingDuringABroadcastWithExcept() throws {
        let test = SocketIOTestServer { $0.maxBufferedBytes = 16 }
        // Connected first: a connect runs the loop, which would flush the slow clients' backlog.
        let (stranger, _) = try test.connectedClient()
        let (clients, sockets) = try self.slowAndFastClients(test)
        test.server.broadcast(
            SocketIOPacket(type: .event, data: ["tick"]),
            options: BroadcastOptions(namespace: "/", except: ["nobody"])
        )
        XCTAssertEqual(try stranger.readTexts(), [#"42["tick"]"#])
        XCTAssertEqual(test.server.slowClientDisconnects, 2)
        for index in [1, 3] {
            XCTAssertEqual(try clients[index].readTexts(), [#"42["tick"]"#])
        }
        XCTAssertEqual(test.server.namespace(named: "/").rooms["game"], [sockets[1].id, sockets[3].id])
    }
}
