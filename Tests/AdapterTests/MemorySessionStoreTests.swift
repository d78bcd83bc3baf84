import NIOCore
import NIOEmbedded
import SidecastJSON
import SocketIO
import XCTest

@testable import Adapter

/// The in-memory session store, branch by branch against Node's `SessionAwareAdapter`
/// (socket.io-adapter, lib/in-memory-adapter.ts): which packets get an offset, which missed
/// packets a restored session gets, and when a restore fails.
final class MemorySessionStoreTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var store: MemorySessionStore!

    override func setUp() {
        loop = EmbeddedEventLoop()
        store = MemorySessionStore(window: .seconds(60), maxPackets: 100, eventLoop: loop)
    }

    override func tearDown() {
        store = nil
        XCTAssertNoThrow(try loop.syncShutdownGracefully())
    }

    private func event(_ args: JSONValue..., namespace: String = "/") -> SocketIOPacket {
        SocketIOPacket(type: .event, namespace: namespace, data: .array([.string("e")] + args))
    }

    /// Keeps an event to `rooms`; returns its offset.
    @discardableResult
    private func keep(_ n: Int, to rooms: Set<String> = [], except: Set<String> = [], namespace: String = "/") -> String {
        let kept = store.keep(event(.int(Int64(n)), namespace: namespace), options: BroadcastOptions(namespace: namespace, rooms: rooms, except: except))
        guard case .array(let args)? = kept.data, case .string(let offset)? = args.last, args.count == 3 else {
            XCTFail("no offset appended: \(String(describing: kept.data))")
            return ""
        }
        return offset
    }

    private func restore(_ pid: String, _ offset: String, namespace: String = "/") -> RestoredSession? {
        var result: RestoredSession??
        store.restore(pid: pid, offset: offset, namespace: namespace) { result = .some($0) }
        guard let answered = result else {
            XCTFail("the memory store answers at once")
            return nil
        }
        return answered
    }

    private func session(_ pid: String, rooms: [String], namespace: String = "/") -> PersistedSession {
        PersistedSession(pid: pid, sid: "sid-" + pid, namespace: namespace, rooms: rooms, data: ["n": 1])
    }

    private func numbers(_ restored: RestoredSession?) -> [Int64] {
        (restored?.missedPackets ?? []).compactMap { $0.data?.arrayValue?[1].intValue }
    }

    func testOnlyEventsWithoutAckAndNotVolatileGetAnOffset() {
        let options = BroadcastOptions(namespace: "/")
        XCTAssertEqual(store.keep(event(1), options: options).data?.arrayValue?.count, 3)
        var withAck = event(2)
        withAck.id = 7
        XCTAssertEqual(store.keep(withAck, options: options), withAck)
        var volatile = options
        volatile.volatile = true
        XCTAssertEqual(store.keep(event(3), options: volatile), event(3))
        let ack = SocketIOPacket(type: .ack, namespace: "/", id: 1, data: [1])
        XCTAssertEqual(store.keep(ack, options: options), ack)
        // A local broadcast is kept: Node's adapter keeps whatever reaches its `broadcast`.
        var local = options
        local.local = true
        XCTAssertEqual(store.keep(event(4), options: local).data?.arrayValue?.count, 3)
        XCTAssertEqual(store.packetCount, 2)
    }

    func testThePrintedArgumentsOfAnEmitGetTheOffsetAppendedAsText() throws {
        let printed = SocketIOPacket(type: .event, namespace: "/", printedData: JSONText(["e", ["a": [1, 2]], "x"]))
        let kept = store.keep(printed, options: BroadcastOptions(namespace: "/"))
        let text = try XCTUnwrap(kept.printedData)
        let args = try XCTUnwrap(text.value.arrayValue)
        XCTAssertEqual(Array(args.prefix(3)), ["e", ["a": [1, 2]], "x"])
        XCTAssertEqual(args.count, 4)
        XCTAssertEqual(String(buffer: text.bytes), #"["e",{"a":[1,2]},"x","# + "\"\(args[3].stringValue!)\"]")
    }

    func testOffsetsAreDistinct() {
        let offsets = (0..<50).map { keep($0) }
        XCTAssertEqual(Set(offsets).count, 50)
    }

    func testRestoreReplaysWhatTheSessionsRoomsGotAfterItsOffsetInOrder() {
        let offset = keep(0, to: ["lobby"])
        store.persist(session("p", rooms: ["sid-p", "lobby"]))
        keep(1, to: ["lobby"])
        keep(2)  // the whole namespace
        keep(3, to: ["elsewhere"])
        keep(4, to: ["lobby"], except: ["sid-p"])
        keep(5, to: ["sid-p"])
        keep(6, namespace: "/other")
        keep(7, to: ["elsewhere", "lobby"])
        let restored = restore("p", offset)
        XCTAssertEqual(restored?.session, session("p", rooms: ["sid-p", "lobby"]))
        XCTAssertEqual(numbers(restored), [1, 2, 5, 7])
        XCTAssertEqual(store.sessionCount, 0)
        XCTAssertNil(restore("p", offset), "a session comes back once")
    }

    func testLookUpLeavesTheSessionInPlace() {
        let offset = keep(0)
        store.persist(session("p", rooms: []))
        var sid: String??
        store.lookUp(pid: "p", offset: offset, namespace: "/") { sid = .some($0) }
        XCTAssertEqual(sid, .some("sid-p"))
        store.lookUp(pid: "p", offset: "nope", namespace: "/") { sid = .some($0) }
        XCTAssertEqual(sid, .some(nil))
        XCTAssertEqual(store.sessionCount, 1)
        XCTAssertNotNil(restore("p", offset))
    }

    func testRestoreFailsForAnUnknownPidAnotherNamespaceOrAnOffsetNotKept() {
        let offset = keep(0)
        store.persist(session("p", rooms: []))
        XCTAssertNil(restore("q", offset))
        XCTAssertNil(restore("p", offset, namespace: "/other"))
        XCTAssertNil(restore("p", "nope"))
        // Another store's offset with the same number is not ours.
        let other = MemorySessionStore(window: .seconds(60), maxPackets: 100, eventLoop: loop)
        let foreign = other.keep(event(0), options: BroadcastOptions(namespace: "/")).data?.arrayValue?.last?.stringValue
        XCTAssertNil(restore("p", foreign ?? ""))
        // An offset past the last kept packet is not kept either.
        XCTAssertNil(restore("p", String(offset.dropLast()) + "z"))
        XCTAssertEqual(store.sessionCount, 1, "a failed restore leaves the session")
        XCTAssertEqual(numbers(restore("p", offset)), [])
    }

    func testTheOldestPacketFallsOutPastMaxPackets() {
        store = MemorySessionStore(window: .seconds(60), maxPackets: 3, eventLoop: loop)
        let first = keep(0)
        let second = keep(1)
        store.persist(session("p", rooms: []))
        keep(2)
        keep(3)
        XCTAssertEqual(store.packetCount, 3)
        XCTAssertNil(restore("p", first), "its offset fell out")
        XCTAssertEqual(numbers(restore("p", second)), [2, 3])
    }

    func testTheWindowExpiresSessionsAndPackets() {
        let offset = keep(0)
        store.persist(session("p", rooms: []))
        store.sweep(now: .now() + .seconds(30))
        XCTAssertEqual(store.sessionCount, 1)
        XCTAssertEqual(store.packetCount, 1)
        store.sweep(now: .now() + .seconds(61))
        XCTAssertEqual(store.sessionCount, 0)
        XCTAssertEqual(store.packetCount, 0)
        XCTAssertNil(restore("p", offset))
    }
}
