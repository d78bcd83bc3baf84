import EngineIO
import EngineIOTestSupport
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import SidecastJSON
import SocketIO
import XCTest

@testable import Adapter

/// The cluster adapter's request logic over an in-memory medium: several nodes in one process,
/// each a real Socket.IO server with real (embedded) WebSocket clients, joined by `FakeBus`.
final class ClusterAdapterTests: XCTestCase {
    private var bus: FakeBus!

    override func setUp() {
        bus = FakeBus()
    }

    // MARK: fetchSockets and allRooms

    func testFetchSocketsCollectsEveryNodesSockets() throws {
        let (a, b, c) = (try node("A"), try node("B"), try node("C"))
        let ids = [try a.connect(), try b.connect(), try b.connect(), try c.connect()]
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        XCTAssertNil(result, "waits for the other nodes")
        bus.deliverAll()
        XCTAssertEqual(Set(try XCTUnwrap(result).get().map(\.id)), Set(ids))
        XCTAssertEqual(a.adapter.pendingRequestCount, 0)
    }

    func testFetchSocketsAppliesTheSelectorOnEveryNode() throws {
        let (a, b) = (try node("A"), try node("B"))
        _ = try a.connect()
        let wanted = try b.connect()
        _ = try b.connect()
        b.server.socket(id: wanted, namespace: "/")?.join("blue")
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/", rooms: ["blue"])) { result = $0 }
        bus.deliverAll()
        let sockets = try XCTUnwrap(result).get()
        XCTAssertEqual(sockets.map(\.id), [wanted])
        XCTAssertEqual(sockets.first?.rooms, [wanted, "blue"])
    }

    func testFetchSocketsFailsWithTimeoutWhenANodeNeverAnswers() throws {
        let (a, b, c) = (try node("A"), try node("B"), try node("C"))
        _ = try b.connect()
        bus.silence("C")
        _ = c
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        bus.deliverAll()
        XCTAssertNil(result, "B answered, C did not yet")
        a.advance(by: .milliseconds(4_999))
        XCTAssertNil(result)
        a.advance(by: .milliseconds(1))
        guard case .failure(.timeout)? = result else { return XCTFail("\(String(describing: result))") }
        XCTAssertEqual(a.adapter.pendingRequestCount, 0)
    }

    func testAnswersAfterTheTimeoutAreDropped() throws {
        let (a, b) = (try node("A"), try node("B"))
        _ = try b.connect()
        bus.hold("B")
        var results: [Result<[SocketDetails], AdapterError>] = []
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { results.append($0) }
        bus.deliverAll()
        a.advance(by: .seconds(5))
        XCTAssertEqual(results.count, 1)
        bus.release("B")
        bus.deliverAll()
        XCTAssertEqual(results.count, 1, "a late answer must not complete the request again")
        XCTAssertEqual(bus.delivered(to: "A", kind: "fetchSocketsResponse"), 1, "the late answer did arrive")
        XCTAssertEqual(a.adapter.pendingRequestCount, 0)
    }

    func testTheNodeCountIsTakenWhenTheRequestStarts() throws {
        let (a, b) = (try node("A"), try node("B"))
        let first = try b.connect()
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        bus.deliverAll()
        XCTAssertEqual(try XCTUnwrap(result).get().map(\.id), [first])

        // A third node: the next request waits for it too.
        let c = try node("C")
        let second = try c.connect()
        bus.silence("C")
        result = nil
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        bus.deliverAll()
        XCTAssertNil(result, "two other nodes now, one answered")
        bus.unsilence("C")
        result = nil
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        bus.deliverAll()
        XCTAssertEqual(Set(try XCTUnwrap(result).get().map(\.id)), [first, second])

        // Alone again: answers at once from this node, without publishing.
        bus.leave("B")
        bus.leave("C")
        let published = bus.published(by: "A")
        result = nil
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { result = $0 }
        XCTAssertEqual(try XCTUnwrap(result).get().map(\.id), [])
        XCTAssertEqual(bus.published(by: "A"), published)
    }

    func testRequestsFailWhenTheMediumCannotCountNodes() throws {
        let (a, _) = (try node("A"), try node("B"))
        bus.reachable = false
        var fetch: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/")) { fetch = $0 }
        if case .failure(.unavailable)? = fetch {} else { XCTFail("\(String(describing: fetch))") }
        var emit: Result<ServerSideEmitResult, AdapterError>?
        a.adapter.serverSideEmit(namespace: "/", event: "e", args: [], ackTimeout: .seconds(1)) { emit = $0 }
        if case .failure(.unavailable)? = emit {} else { XCTFail("\(String(describing: emit))") }
    }

    func testAllRoomsAsksEveryNodeWhenTheFormatCarriesTheRequest() throws {
        let (a, b) = (try node("A", carriesAllRooms: true), try node("B", carriesAllRooms: true))
        let local = try a.connect()
        let remote = try b.connect()
        b.server.socket(id: remote, namespace: "/")?.join("red")
        var result: Result<Set<String>, AdapterError>?
        a.adapter.allRooms(namespace: "/") { result = $0 }
        bus.deliverAll()
        XCTAssertEqual(try XCTUnwrap(result).get(), [local, remote, "red"])
        XCTAssertEqual(bus.delivered(to: "B", kind: "allRooms"), 1)
    }

    func testAllRoomsComesFromEverySocketWithoutTheRequest() throws {
        let (a, b) = (try node("A"), try node("B"))
        let remote = try b.connect()
        b.server.socket(id: remote, namespace: "/")?.join("red")
        var result: Result<Set<String>, AdapterError>?
        a.adapter.allRooms(namespace: "/") { result = $0 }
        bus.deliverAll()
        XCTAssertEqual(try XCTUnwrap(result).get(), [remote, "red"])
        XCTAssertEqual(bus.delivered(to: "B", kind: "allRooms"), 0)
        XCTAssertEqual(bus.delivered(to: "B", kind: "fetchSockets"), 1)
    }

    // MARK: broadcast with acks

    func testBroadcastWithAckCollectsEverySocketOfEveryNode() throws {
        let (a, b) = (try node("A"), try node("B"))
        let local = try a.connect()
        _ = try b.connect()
        _ = try b.connect()
        var result: BroadcastAckResult?
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { result = $0 }
        bus.deliverAll()
        try a.answerAcks(with: "a")
        try b.answerAcks(with: "b")
        bus.deliverAll()
        let done = try XCTUnwrap(result)
        XCTAssertFalse(done.timedOut)
        XCTAssertEqual(done.expected, 3)
        XCTAssertEqual(done.responses.count, 3)
        XCTAssertEqual(done.responses.filter { $0.socketID == local }.map(\.args), [["a"]])
        XCTAssertEqual(done.responses.filter { $0.socketID == nil }.map(\.args), [["b"], ["b"]])
        XCTAssertEqual(a.adapter.pendingRequestCount, 0)
    }

    func testBroadcastWithAckWaitsForEveryNodesCount() throws {
        let (a, b) = (try node("A"), try node("B"))
        _ = try a.connect()
        _ = try b.connect()
        bus.hold("B")
        var result: BroadcastAckResult?
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { result = $0 }
        bus.deliverAll()
        try a.answerAcks(with: "a")
        XCTAssertNil(result, "every local socket answered, but B has not said how many it asked")
        bus.release("B")
        bus.deliverAll()
        try b.answerAcks(with: "b")
        bus.deliverAll()
        XCTAssertEqual(result?.responses.count, 2)
        XCTAssertEqual(result?.timedOut, false)
    }

    func testANodeDyingMidRequestEndsTheBroadcastAtItsTimeout() throws {
        let (a, b) = (try node("A"), try node("B"))
        _ = try b.connect()
        _ = try b.connect()
        var result: BroadcastAckResult?
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { result = $0 }
        bus.deliverAll()
        try b.answerAcks(with: "b", limit: 1)
        bus.deliverAll()
        bus.silence("B")
        try b.answerAcks(with: "b")
        bus.deliverAll()
        XCTAssertNil(result)
        a.advance(by: .seconds(2))
        let done = try XCTUnwrap(result)
        XCTAssertTrue(done.timedOut)
        XCTAssertEqual(done.expected, 2)
        XCTAssertEqual(done.responses.count, 1)
        XCTAssertEqual(a.adapter.pendingRequestCount, 0)
    }

    func testALocalBroadcastWithAckEndsAtItsTimeoutWhenAClientNeverAnswers() throws {
        let (a, _) = (try node("A"), try node("B"))
        _ = try a.connect()
        var result: BroadcastAckResult?
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/", local: true), timeout: .seconds(2)) { result = $0 }
        bus.deliverAll()
        XCTAssertNil(result)
        a.advance(by: .seconds(2))
        let done = try XCTUnwrap(result)
        XCTAssertTrue(done.timedOut)
        XCTAssertEqual(done.expected, 1)
        XCTAssertEqual(done.responses.count, 0)
    }

    func testBroadcastWithAckWithoutTheMediumKeepsTheLocalAnswers() throws {
        let (a, _) = (try node("A"), try node("B"))
        _ = try a.connect()
        bus.reachable = false
        var result: BroadcastAckResult?
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { result = $0 }
        try a.answerAcks(with: "a")
        XCTAssertEqual(result?.responses.count, 1)
        XCTAssertEqual(result?.timedOut, false)
    }

    func testTheAnsweringNodeStopsForwardingAcksAfterTheRequestersTimeout() throws {
        let (a, b) = (try node("A"), try node("B"))
        _ = try b.connect()
        a.adapter.broadcastWithAck(event("ping"), options: BroadcastOptions(namespace: "/"), timeout: .seconds(2)) { _ in }
        bus.deliverAll()
        b.advance(by: .seconds(2))
        try b.answerAcks(with: "late")
        bus.deliverAll()
        XCTAssertEqual(bus.delivered(to: "A", kind: "broadcastAck"), 0)
        XCTAssertEqual(bus.delivered(to: "A", kind: "broadcastClientCount"), 1)
    }

    // MARK: serverSideEmit

    func testServerSideEmitCollectsOneAnswerPerNode() throws {
        let (a, b, c) = (try node("A"), try node("B"), try node("C"))
        b.delegate.answer = { reply in reply("from B"); reply("twice") }
        c.delegate.answer = { reply in reply("from C") }
        var result: Result<ServerSideEmitResult, AdapterError>?
        a.adapter.serverSideEmit(namespace: "/", event: "hello", args: [1], ackTimeout: .seconds(1)) { result = $0 }
        bus.deliverAll()
        let done = try XCTUnwrap(result).get()
        XCTAssertEqual(done.expected, 2)
        XCTAssertFalse(done.timedOut)
        XCTAssertEqual(Set(done.responses), ["from B", "from C"])
        XCTAssertEqual(b.delegate.received.map(\.event), ["hello"])
        XCTAssertEqual(b.delegate.received.first?.args, [1])
        XCTAssertEqual(b.delegate.received.first?.from, "A")
        XCTAssertEqual(a.adapter.pendingRequestCount, 0)
    }

    func testServerSideEmitTimesOutAfterItsOwnTimeoutWithWhatCame() throws {
        let (a, b, _) = (try node("A"), try node("B"), try node("C"))
        b.delegate.answer = { reply in reply("from B") }
        var result: Result<ServerSideEmitResult, AdapterError>?
        a.adapter.serverSideEmit(namespace: "/", event: "hello", args: [], ackTimeout: .milliseconds(300)) { result = $0 }
        bus.deliverAll()
        XCTAssertNil(result)
        a.advance(by: .milliseconds(300))
        let done = try XCTUnwrap(result).get()
        XCTAssertTrue(done.timedOut)
        XCTAssertEqual(done.expected, 2)
        XCTAssertEqual(done.responses, ["from B"])
    }

    func testServerSideEmitWithoutAckWaitsForNobody() throws {
        let (a, b) = (try node("A"), try node("B"))
        var result: Result<ServerSideEmitResult, AdapterError>?
        a.adapter.serverSideEmit(namespace: "/", event: "hello", args: [], ackTimeout: nil) { result = $0 }
        XCTAssertEqual(try XCTUnwrap(result).get().expected, 0)
        bus.deliverAll()
        XCTAssertEqual(b.delegate.received.count, 1)
        XCTAssertNil(b.delegate.lastReply, "no answer is asked for")
    }

    func testNodeBuffersTurnBackIntoBinary() throws {
        let (a, b) = (try node("A"), try node("B"))
        b.delegate.answer = { reply in reply(["type": "Buffer", "data": [1, 2]]) }
        var result: Result<ServerSideEmitResult, AdapterError>?
        a.adapter.serverSideEmit(namespace: "/", event: "bin", args: [["type": "Buffer", "data": [255]]], ackTimeout: .seconds(1)) {
            result = $0
        }
        bus.deliverAll()
        XCTAssertEqual(b.delegate.received.first?.args, [.binary(ByteBuffer(bytes: [255]))])
        XCTAssertEqual(try XCTUnwrap(result).get().responses, [.binary(ByteBuffer(bytes: [1, 2]))])
    }

    // MARK: broadcasts, rooms and own messages

    func testBroadcastReachesEveryNodesMatchingSockets() throws {
        let (a, b) = (try node("A"), try node("B"))
        let target = try b.connect()
        _ = try b.connect()
        let local = try a.connect()
        a.adapter.broadcast(event("hi"), options: BroadcastOptions(namespace: "/", rooms: [target, local]))
        bus.deliverAll()
        XCTAssertEqual(try b.clients[target]?.events(), ["42[\"hi\"]"])
        XCTAssertEqual(b.clients.values.filter { !$0.received.isEmpty }.count, 1)
        XCTAssertEqual(try a.clients[local]?.events(), ["42[\"hi\"]"])
    }

    func testLocalOperationsStayOnThisNode() throws {
        let (a, b) = (try node("A"), try node("B"))
        _ = try b.connect()
        a.adapter.broadcast(event("hi"), options: BroadcastOptions(namespace: "/", local: true))
        a.adapter.addSockets(BroadcastOptions(namespace: "/", local: true), rooms: ["x"])
        var result: Result<[SocketDetails], AdapterError>?
        a.adapter.fetchSockets(BroadcastOptions(namespace: "/", local: true)) { result = $0 }
        XCTAssertEqual(try XCTUnwrap(result).get().count, 0)
        XCTAssertEqual(bus.published(by: "A"), 0)
    }

    func testJoinLeaveAndDisconnectReachOtherNodes() throws {
        let (a, b) = (try node("A"), try node("B"))
        let remote = try b.connect()
        a.adapter.addSockets(BroadcastOptions(namespace: "/", rooms: [remote]), rooms: ["green"])
        bus.deliverAll()
        XCTAssertEqual(b.server.socket(id: remote, namespace: "/")?.rooms.contains("green"), true)
        a.adapter.removeSockets(BroadcastOptions(namespace: "/", rooms: ["green"]), rooms: ["green"])
        bus.deliverAll()
        XCTAssertEqual(b.server.socket(id: remote, namespace: "/")?.rooms.contains("green"), false)
        a.adapter.disconnectSockets(BroadcastOptions(namespace: "/"), close: false)
        bus.deliverAll()
        XCTAssertNil(b.server.socket(id: remote, namespace: "/"))
    }

    func testOwnMessagesAreIgnored() throws {
        let a = try node("A")
        let local = try a.connect()
        a.adapter.transport(didReceive: .broadcast(packet: event("echo"), options: ClusterOptions(), requestId: nil), from: "A", namespace: "/")
        XCTAssertEqual(try a.clients[local]?.events(), [])
        a.adapter.transport(didReceive: .broadcast(packet: event("other"), options: ClusterOptions(), requestId: nil), from: "Z", namespace: "/")
        XCTAssertEqual(try a.clients[local]?.events(), ["42[\"other\"]"])
    }

    func testRoomsComeAndGoToTheTransportThatFollowsThem() throws {
        let a = try node("A", followsRooms: true)
        let id = try a.connect()
        let socket = try XCTUnwrap(a.server.socket(id: id, namespace: "/"))
        socket.join("red")
        socket.leave("red")
        XCTAssertEqual(a.transport.roomEvents, ["+\(id) private", "+red public", "-red"])
        let plain = try node("B")
        _ = try plain.connect()
        XCTAssertEqual(plain.transport.roomEvents, [])
    }

    // MARK: Own requests applied on read-back (recovery on a Redis stream)

    func testOwnRequestsReachLocalSocketsOnReadBackAndWorkWaitsForThoseBeforeIt() throws {
        let a = try node("A", readsBack: true)
        let id = try a.connect()
        var ran: [String] = []
        func note(_ what: String) { ran.append("\(what) after \((try? a.clients[id]?.events().count) ?? -1)") }
        a.adapter.afterOwnRequests { note("idle") }
        XCTAssertEqual(ran, ["idle after 0"], "nothing in flight: at once")
        a.adapter.addSockets(BroadcastOptions(namespace: "/", rooms: [id]), rooms: ["r"])
        a.adapter.broadcast(event("one"), options: BroadcastOptions(namespace: "/", rooms: ["r"]))
        a.adapter.afterOwnRequests { note("first") }
        a.adapter.broadcast(event("two"), options: BroadcastOptions(namespace: "/", rooms: ["r"]))
        a.adapter.afterOwnRequests { note("second") }
        XCTAssertEqual(a.server.socket(id: id, namespace: "/")?.rooms.contains("r"), false, "the join waits for its read-back")
        XCTAssertEqual(try a.clients[id]?.events(), [])
        XCTAssertEqual(ran.count, 1)
        bus.deliverAll()
        XCTAssertEqual(try a.clients[id]?.events(), ["42[\"one\"]", "42[\"two\"]"])
        XCTAssertEqual(ran, ["idle after 0", "first after 1", "second after 2"])
        // A local broadcast is never published: applied at once.
        a.adapter.broadcast(event("here"), options: BroadcastOptions(namespace: "/", local: true))
        XCTAssertEqual(try a.clients[id]?.events().last, "42[\"here\"]")
    }

    func testWorkWaitsNoLongerThanTheRequestsTimeoutForAReadBackThatNeverComes() throws {
        let a = try node("A", readsBack: true)
        _ = try a.connect()
        bus.silence("A")
        a.adapter.broadcast(event("lost"), options: BroadcastOptions(namespace: "/"))
        var ran = false
        a.adapter.afterOwnRequests { ran = true }
        bus.deliverAll()
        a.advance(by: .milliseconds(4_999))
        XCTAssertFalse(ran)
        a.advance(by: .milliseconds(1))
        XCTAssertTrue(ran)
        var next = false
        a.adapter.afterOwnRequests { next = true }
        XCTAssertTrue(next, "what never came back holds nothing up afterwards")
    }

    // MARK: Helpers

    private func event(_ name: String) -> SocketIOPacket {
        SocketIOPacket(type: .event, namespace: "/", data: [.string(name)])
    }

    private func node(_ uid: String, carriesAllRooms: Bool = false, followsRooms: Bool = false, readsBack: Bool = false) throws -> FakeNode {
        FakeNode(uid: uid, bus: bus, carriesAllRooms: carriesAllRooms, followsRooms: followsRooms, readsBack: readsBack)
    }
}

/// The medium between fake nodes: queues what they publish and delivers it when the test says,
/// so it can hold a node's traffic back, drop it (a node that died or never answers) or let
/// it through late.
final class FakeBus {
    struct Envelope {
        var from: String
        var to: String
        var kind: String
        var deliver: () -> Void
    }

    private(set) var transports: [String: FakeTransport] = [:]
    private var queue: [Envelope] = []
    private var held: [Envelope] = []
    private var holding: Set<String> = []
    private var silent: Set<String> = []
    private var deliveredCounts: [String: Int] = [:]
    private var publishedCounts: [String: Int] = [:]
    /// False: the medium can't count nodes, as Redis when it's unreachable.
    var reachable = true

    func join(_ transport: FakeTransport) { transports[transport.uid] = transport }
    func leave(_ uid: String) { transports[uid] = nil }
    /// The node's outgoing traffic waits until `release`.
    func hold(_ uid: String) { holding.insert(uid) }
    func release(_ uid: String) {
        holding.remove(uid)
        queue += held.filter { $0.from == uid }
        held.removeAll { $0.from == uid }
    }
    /// The node's outgoing traffic is lost (a node that died or never answers).
    func silence(_ uid: String) { silent.insert(uid) }
    func unsilence(_ uid: String) { silent.remove(uid) }

    func published(by uid: String) -> Int { publishedCounts[uid, default: 0] }
    func delivered(to uid: String, kind: String) -> Int { deliveredCounts["\(uid) \(kind)", default: 0] }

    func send(from: String, to: String, kind: String, _ deliver: @escaping () -> Void) {
        publishedCounts[from, default: 0] += 1
        guard !silent.contains(from) else { return }
        let envelope = Envelope(from: from, to: to, kind: kind, deliver: deliver)
        if holding.contains(from) { held.append(envelope) } else { queue.append(envelope) }
    }

    /// Delivers until nothing is left to deliver (answers may cause more messages).
    func deliverAll() {
        while !queue.isEmpty {
            let envelope = queue.removeFirst()
            guard transports[envelope.to] != nil else { continue }
            deliveredCounts["\(envelope.to) \(envelope.kind)", default: 0] += 1
            envelope.deliver()
        }
    }
}

/// A transport over `FakeBus`: requests go to every other node of the bus, answers to the
/// requester, and the node count is the bus's.
final class FakeTransport: ClusterTransport {
    weak var delegate: ClusterTransportDelegate?
    let carriesAllRoomsRequests: Bool
    let followsRooms: Bool
    let uid: String
    private let bus: FakeBus
    private(set) var roomEvents: [String] = []
    /// As the streams transport with recovery on: this node's own broadcasts, joins, leaves
    /// and disconnects come back to it over the bus, after what was sent before them.
    var appliesOwnRequestsOnReadBack = false

    init(uid: String, bus: FakeBus, carriesAllRooms: Bool, followsRooms: Bool) {
        self.uid = uid
        self.bus = bus
        self.carriesAllRoomsRequests = carriesAllRooms
        self.followsRooms = followsRooms
        bus.join(self)
    }

    func serve(namespace: String) {}

    func publish(_ request: ClusterRequest, namespace: String) {
        if appliesOwnRequestsOnReadBack {
            switch request {
            case .broadcast(_, _, nil), .socketsJoin, .socketsLeave, .disconnectSockets:
                bus.send(from: uid, to: uid, kind: "read-back") { [weak self] in
                    self?.delegate?.transport(didReadBack: request, namespace: namespace)
                }
            case .broadcast, .fetchSockets, .allRooms, .serverSideEmit:
                break
            }
        }
        for other in bus.transports.keys.sorted() where other != uid {
            bus.send(from: uid, to: other, kind: Self.kind(request)) { [bus, uid] in
                bus.transports[other]?.delegate?.transport(didReceive: request, from: uid, namespace: namespace)
            }
        }
    }

    func publishResponse(_ response: ClusterResponse, to requester: String?, namespace: String) {
        guard let requester else { return }
        bus.send(from: uid, to: requester, kind: Self.kind(response)) { [bus] in
            bus.transports[requester]?.delegate?.transport(didReceive: response)
        }
    }

    func roomCreated(_ room: String, isPrivate: Bool, namespace: String) {
        roomEvents.append("+\(room) \(isPrivate ? "private" : "public")")
    }

    func roomDeleted(_ room: String, namespace: String) {
        roomEvents.append("-\(room)")
    }

    func clearRoomEvents() { roomEvents.removeAll() }

    func serverCount(namespace: String, completion: @escaping (Result<Int, AdapterError>) -> Void) {
        completion(bus.reachable ? .success(bus.transports.count) : .failure(.unavailable("the bus is down")))
    }

    func close() { bus.leave(uid) }

    private static func kind(_ request: ClusterRequest) -> String {
        switch request {
        case .broadcast(_, _, nil): return "broadcast"
        case .broadcast: return "broadcastWithAck"
        case .socketsJoin: return "socketsJoin"
        case .socketsLeave: return "socketsLeave"
        case .disconnectSockets: return "disconnectSockets"
        case .fetchSockets: return "fetchSockets"
        case .allRooms: return "allRooms"
        case .serverSideEmit: return "serverSideEmit"
        }
    }

    private static func kind(_ response: ClusterResponse) -> String {
        switch response {
        case .fetchSockets: return "fetchSocketsResponse"
        case .allRooms: return "allRoomsResponse"
        case .serverSideEmit: return "serverSideEmitResponse"
        case .broadcastClientCount: return "broadcastClientCount"
        case .broadcastAck: return "broadcastAck"
        }
    }
}

/// Hears server-side emits; `answer` decides what a node replies.
final class RecordingAdapterDelegate: AdapterDelegate {
    var received: [(event: String, args: [JSONValue], from: String)] = []
    var answer: (((JSONValue) -> Void) -> Void)?
    var lastReply: ((JSONValue) -> Void)?

    func adapter(
        didReceiveServerSideEmit event: String,
        args: [JSONValue],
        namespace: String,
        from node: String,
        reply: ((JSONValue) -> Void)?
    ) {
        received.append((event, args, node))
        lastReply = reply
        if let reply { answer?(reply) }
    }
}

/// Accepts every connection to "/".
final class AcceptingSink: SocketEventSink {
    func namespaceExists(_ namespace: String) -> Bool { namespace == "/" }
    func authorize(_ request: ConnectRequest, decide: @escaping (ConnectDecision) -> Void) { decide(.accept(data: nil)) }
    func authorizationAbandoned(socketID: String, namespace: String) {}
    func socketDidConnect(_ socket: SocketIOSocket) {}
    func socket(_ socket: SocketIOSocket, didReceive event: SocketIOEvent) {}
    func socket(_ socket: SocketIOSocket, didDisconnectWith reason: DisconnectReason) {}
}

/// One WebSocket client of a fake node, keeping every Socket.IO packet it got.
final class FakeClient {
    let connection: TestConnection
    var received: [String] = []

    init(connection: TestConnection) {
        self.connection = connection
    }

    func read() throws {
        received += try connection.readTexts().filter { $0 != "2" }
    }

    /// Events received (Engine.IO "4", Socket.IO "2"), ack ids left out.
    func events() throws -> [String] {
        try read()
        return received.filter { $0.hasPrefix("42") }.map { text in
            "42" + text.dropFirst(2).drop { $0.isNumber }
        }
    }
}

/// A Socket.IO server with its cluster adapter over a `FakeTransport`, on its own embedded loop.
final class FakeNode {
    let engine: TestServer
    let server: SocketIOServer
    let adapter: ClusterAdapter
    let transport: FakeTransport
    let delegate = RecordingAdapterDelegate()
    private let sink = AcceptingSink()
    private(set) var clients: [String: FakeClient] = [:]
    private var answered: Set<String> = []

    init(uid: String, bus: FakeBus, carriesAllRooms: Bool, followsRooms: Bool, readsBack: Bool = false) {
        // Pings would close the silent test clients while a test moves time forward.
        engine = TestServer {
            $0.pingInterval = .seconds(3600)
            $0.pingTimeout = .seconds(3600)
        }
        var logger = Logger(label: "cluster-adapter-test")
        logger.logLevel = .critical
        server = SocketIOServer(configuration: SocketIOServerConfiguration(), eventLoop: engine.loop, logger: logger)
        server.sink = sink
        engine.server.delegate = server
        transport = FakeTransport(uid: uid, bus: bus, carriesAllRooms: carriesAllRooms, followsRooms: followsRooms)
        transport.appliesOwnRequestsOnReadBack = readsBack
        adapter = ClusterAdapter(server: server, transport: transport, uid: uid, requestsTimeout: .seconds(5), logger: logger)
        adapter.delegate = delegate
        adapter.serve(namespace: "/")
    }

    func advance(by amount: TimeAmount) {
        engine.advance(by: amount)
    }

    /// Connects a client to "/" and returns its socket id.
    func connect() throws -> String {
        let (connection, _) = try engine.openWebSocketSession()
        try connection.sendText("40")
        let texts = try connection.readTexts()
        let text = try XCTUnwrap(texts.first { $0.hasPrefix("40") })
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8.dropFirst(2)))
        let id = try XCTUnwrap((object as? [String: Any])?["sid"] as? String)
        clients[id] = FakeClient(connection: connection)
        return id
    }

    /// Every client answers each event with an ack id it has not answered yet, up to `limit`
    /// answers in all.
    func answerAcks(with answer: String, limit: Int = .max) throws {
        var sent = 0
        for (id, client) in clients.sorted(by: { $0.key < $1.key }) {
            try client.read()
            for text in client.received where text.hasPrefix("42") && sent < limit {
                let ackID = String(text.dropFirst(2).prefix { $0.isNumber })
                guard !ackID.isEmpty, answered.insert("\(id) \(ackID)").inserted else { continue }
                try client.connection.sendText("43\(ackID)[\"\(answer)\"]")
                sent += 1
            }
        }
    }
}
