@testable import EngineIO
import NIOCore
import XCTest

/// Session ids that name their node (`--relay-sessions`), and the frames relayed WebSockets
/// carry between nodes.
final class RelayNodeTests: XCTestCase {
    /// Characters 2 to 5 say the node, the first two still the shard, and the rest stays random.
    func testSessionIDsNameTheirNodeAndShard() {
        let node = RelayNode(tag: "Ab-_")!
        for shard in [LoopShard.only, LoopShard(index: 3, count: 4), LoopShard(index: 4094, count: 4095)] {
            var seen = Set<String>()
            for _ in 0..<500 {
                let id = RandomID.make(shard: shard, node: node)
                XCTAssertEqual(id.utf8.count, RandomID.length)
                XCTAssertEqual(RelayNode(owning: id), node, id)
                XCTAssertEqual(LoopShard.index(of: id, count: shard.count), shard.index, id)
                seen.insert(String(id.dropFirst(6)))
            }
            XCTAssertEqual(seen.count, 500, "the nine characters after the node are random")
        }
    }

    func testRandomTagsAreFourIDCharacters() {
        let tags = Set((0..<200).map { _ in RelayNode.random().tag })
        XCTAssertGreaterThan(tags.count, 195)
        for tag in tags {
            XCTAssertEqual(tag.utf8.count, 4)
            XCTAssertNotNil(RelayNode(tag: tag))
        }
    }

    /// Only a sid of sidecast's length can name a node; anything else is not relayed.
    func testWhatIsNotASidNamesNoNode() {
        XCTAssertNil(RelayNode(owning: ""))
        XCTAssertNil(RelayNode(owning: "AAAAAAAAAAAAAA"))
        XCTAssertNil(RelayNode(owning: "AAAAAAAAAAAAAAAAAAAA"), "a Node server's 20-character sid")
        XCTAssertNil(RelayNode(owning: "AA.AAAAAAAAAAAA"))
        XCTAssertEqual(RelayNode(owning: "xxAbcdyyyyyyyyy"), RelayNode(tag: "Abcd"))
        XCTAssertNil(RelayNode(tag: "Abc"))
        XCTAssertNil(RelayNode(tag: "Abc#"))
    }

    /// A packet read from a relayed WebSocket crosses as its text form and reads back the same;
    /// a malformed one stays malformed.
    func testPacketsCrossAsTheirTextForm() {
        let packets: [EngineIOPacket?] = [
            .ping(ByteBuffer(string: "probe")), .pong(ByteBuffer()), .text(ByteBuffer(string: "2[\"chat\",1]")),
            .binary(ByteBuffer(bytes: [0, 255, 0x1E])), .upgrade, .close, .noop, nil,
        ]
        for packet in packets {
            XCTAssertEqual(RelayedFrame(packet).packet, packet)
        }
        XCTAssertEqual(RelayedFrame(.upgrade), RelayedFrame(isBinary: false, bytes: ByteBuffer(string: "5")))
    }

    func testMessagesCrossAsTheyAreWritten() {
        let text = EngineIOMessage.text("hello")
        XCTAssertEqual(RelayedFrame(text), RelayedFrame(isBinary: false, bytes: ByteBuffer(string: "4hello")))
        XCTAssertEqual(RelayedFrame(text).message, text)
        let binary = EngineIOMessage.binary(ByteBuffer(bytes: [1, 2, 3]))
        XCTAssertEqual(RelayedFrame(binary).message, binary)
    }
}
