import Adapter
import XCTest

/// Channel names as the RedisAdapter constructor of `@socket.io/redis-adapter` 8.x builds them
/// from `opts.key` (default "socket.io") and `nsp.name`.
final class RedisChannelsTests: XCTestCase {
    func testNamesForTheMainNamespace() {
        let channels = RedisChannels(namespace: "/")
        XCTAssertEqual(channels.broadcast, "socket.io#/#")
        XCTAssertEqual(channels.room("room1"), "socket.io#/#room1#")
        XCTAssertEqual(channels.broadcastPattern, "socket.io#/#*")
        XCTAssertEqual(channels.request, "socket.io-request#/#")
        XCTAssertEqual(channels.response, "socket.io-response#/#")
        XCTAssertEqual(channels.response(uid: "aB3dE6"), "socket.io-response#/#aB3dE6#")
        XCTAssertEqual(
            channels.subscriptions(uid: "aB3dE6"),
            ["socket.io-request#/#", "socket.io-response#/#", "socket.io-response#/#aB3dE6#"]
        )
    }

    func testCustomPrefixAndNamespace() {
        let channels = RedisChannels(prefix: "app", namespace: "/chat")
        XCTAssertEqual(channels.broadcast, "app#/chat#")
        XCTAssertEqual(channels.request, "app-request#/chat#")
        XCTAssertEqual(channels.broadcastChannel(rooms: []), "app#/chat#")
        XCTAssertEqual(channels.broadcastChannel(rooms: ["r"]), "app#/chat#r#")
        XCTAssertEqual(channels.broadcastChannel(rooms: ["r", "s"]), "app#/chat#")
    }

    func testBroadcastTargetFromTheChannelName() {
        let channels = RedisChannels(namespace: "/chat")
        XCTAssertEqual(channels.broadcastTarget(ofChannel: "socket.io#/chat#"), .namespace)
        XCTAssertEqual(channels.broadcastTarget(ofChannel: "socket.io#/chat#room1#"), .room("room1"))
        // A room name may itself hold "#" and non-ASCII text.
        XCTAssertEqual(channels.broadcastTarget(ofChannel: "socket.io#/chat#a#b#"), .room("a#b"))
        XCTAssertEqual(channels.broadcastTarget(ofChannel: "socket.io#/chat#café#"), .room("café"))
        XCTAssertNil(channels.broadcastTarget(ofChannel: "socket.io#/other#"))
        XCTAssertNil(channels.broadcastTarget(ofChannel: "socket.io-request#/chat#"))
        XCTAssertNil(channels.broadcastTarget(ofChannel: "socket.io#/cha"))
    }
}
