import NIOCore
import NIOEmbedded
import NIOWebSocket
import XCTest

@testable import EngineIO

final class BroadcastEncoderTests: XCTestCase {
    /// Decodes `bytes` with NIO's frame decoder, as a client would.
    private func decodeFrames(_ bytes: ByteBuffer) throws -> [WebSocketFrame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
        try channel.writeInbound(bytes)
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
        XCTAssertTrue(try channel.finish().isClean)
        return frames
    }

    func testPreparedMessagesCarryOneCompleteFrameEach() throws {
        // 3, 125, 126, 300, 65,535, 65,536 and 70,000 bytes: the 7-bit, 16-bit and 64-bit length
        // forms of the header, each side of the boundaries.
        let binary = ByteBuffer(bytes: (0..<70_000).map { UInt8(truncatingIfNeeded: $0) })
        let sizes = [124, 125, 299, 65_534, 65_535]
        let messages: [EngineIOMessage] = [.text("hi")] + sizes.map { .text(String(repeating: "x", count: $0)) }
            + [.binary(ByteBuffer(bytes: (0..<65_536).map { UInt8(truncatingIfNeeded: $0) })), .binary(binary)]
        let prepared = EngineIOBroadcastEncoder.prepare(messages)
        XCTAssertEqual(prepared.map(\.storage), messages.map(\.storage), "the messages themselves are unchanged")
        let expected: [(WebSocketOpcode, ByteBuffer)] = [(.text, ByteBuffer(string: "4hi"))]
            + sizes.map { (.text, ByteBuffer(string: "4" + String(repeating: "x", count: $0))) }
            + [(.binary, ByteBuffer(bytes: (0..<65_536).map { UInt8(truncatingIfNeeded: $0) })), (.binary, binary)]
        XCTAssertEqual(expected.map(\.1.readableBytes), [3, 125, 126, 300, 65_535, 65_536, 65_536, 70_000])
        for (message, (opcode, payload)) in zip(prepared, expected) {
            let frames = try self.decodeFrames(try XCTUnwrap(message.encodedFrame))
            XCTAssertEqual(frames.count, 1)
            XCTAssertEqual(frames.first?.fin, true)
            XCTAssertEqual(frames.first?.opcode, opcode)
            XCTAssertNil(frames.first?.maskKey, "server frames are not masked")
            XCTAssertEqual(frames.first?.data, payload)
        }
        XCTAssertEqual(prepared.map { $0.encodedFrame!.readableBytes - $0.byteCount }, [2, 2, 4, 4, 4, 10, 10, 10],
                       "the shortest header form for each length")
    }

    func testTheHeartbeatsPingFrameIsEncodedTheSameWay() throws {
        let frames = try self.decodeFrames(try XCTUnwrap(EngineIOMessage.ping.encodedFrame))
        XCTAssertEqual(frames.map(\.opcode), [.text])
        XCTAssertEqual(frames.first.map { String(buffer: $0.data) }, "2")
    }
}
