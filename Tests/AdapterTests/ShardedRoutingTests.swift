import SocketIO
import XCTest

@testable import Adapter

/// Where a sharded node publishes, branch by branch as `computeChannel` and
/// `looksLikeASocketId` in `lib/sharded-adapter.ts` of `@socket.io/redis-adapter` 8.3.
final class ShardedRoutingTests: XCTestCase {
    private let channels = RedisChannels(prefix: "socket.io", namespace: "/")
    private let socketID = "abcdefghij0123456789"

    private func broadcast(_ rooms: [String], requestId: String? = nil) -> ClusterMessage.Body {
        .broadcast(packet: SocketIOPacket(type: .event, data: ["e"]), options: ClusterOptions(rooms: rooms), requestId: requestId)
    }

    private func route(_ body: ClusterMessage.Body, _ mode: ShardedSubscriptionMode) -> String {
        ShardedRedisTransport.channel(for: body, mode: mode, channels)
    }

    func testNodesSocketIDRuleIsTwentyUTF16Units() {
        XCTAssertTrue(ShardedRedisTransport.looksLikeASocketID(socketID))
        XCTAssertFalse(ShardedRedisTransport.looksLikeASocketID("abcdefghij01234"), "sidecast's old 15-character ids")
        XCTAssertFalse(ShardedRedisTransport.looksLikeASocketID(socketID + "x"))
        XCTAssertTrue(ShardedRedisTransport.looksLikeASocketID(String(repeating: "é", count: 20)), "JavaScript counts UTF-16 units")
        XCTAssertFalse(ShardedRedisTransport.looksLikeASocketID(String(repeating: "😀", count: 20)), "each is two UTF-16 units")
    }

    func testStaticPublishesEverythingOnTheNamespaceChannel() {
        XCTAssertEqual(route(broadcast(["room"]), .static), "socket.io#/#")
        XCTAssertEqual(route(broadcast([socketID]), .static), "socket.io#/#")
    }

    func testDynamicUsesARoomsChannelExceptForSocketIDs() {
        XCTAssertEqual(route(broadcast(["room"]), .dynamic), "socket.io#/#room#")
        XCTAssertEqual(route(broadcast([socketID]), .dynamic), "socket.io#/#")
        XCTAssertEqual(route(broadcast(["a", "b"]), .dynamic), "socket.io#/#")
        XCTAssertEqual(route(broadcast([]), .dynamic), "socket.io#/#")
        XCTAssertEqual(route(broadcast(["room"], requestId: "r"), .dynamic), "socket.io#/#", "acks need every node counted")
    }

    func testDynamicPrivateUsesTheChannelOfAnyOneRoom() {
        XCTAssertEqual(route(broadcast(["room"]), .dynamicPrivate), "socket.io#/#room#")
        XCTAssertEqual(route(broadcast([socketID]), .dynamicPrivate), "socket.io#/#\(socketID)#")
        XCTAssertEqual(route(broadcast([socketID], requestId: "r"), .dynamicPrivate), "socket.io#/#")
    }

    func testOtherMessagesGoOnTheNamespaceChannel() {
        XCTAssertEqual(route(.socketsJoin(options: ClusterOptions(rooms: ["room"]), rooms: ["x"]), .dynamicPrivate), "socket.io#/#")
        XCTAssertEqual(route(.serverSideEmit(requestId: nil, packet: ["e"]), .dynamic), "socket.io#/#")
    }
}
