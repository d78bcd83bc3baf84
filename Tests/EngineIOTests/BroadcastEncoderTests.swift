import Logging
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
        let encoder = EngineIOBroadcastEncoder(logger: Logger(label: "test"))
        // 5, 300 and 70,000 bytes: the 7-bit, 16-bit and 64-bit length forms of the header.
        let binary = ByteBuffer(bytes: (0..<70_000).map { UInt8(truncatingIfNeeded: $0) })
        let messages: [EngineIOMessage] = [
            .text("hi"), .text(String(repeating: "x", count: 299)), .binary(binary),
        ]
        let prepared = encoder.prepare(messages)
        XCTAssertEqual(prepared.map(\.storage), messages.map(\.storage), "the messages themselves are unchanged")
        let expected: [(WebSocketOpcode, ByteBuffer)] = [
            (.text, ByteBuffer(string: "4hi")), (.text, ByteBuffer(string: "4" + String(repeating: "x", count: 299))),
            (.binary, binary),
        ]
        for (message, (opcode, payload)) in zip(prepared, expected) {
            let frames = try self.decodeFrames(try XCTUnwrap(message.encodedFrame))
            XCTAssertEqual(frames.count, 1)
            XCTAssertEqual(frames.first?.fin, true)
            XCTAssertEqual(frames.first?.opcode, opcode)
            XCTAssertNil(frames.first?.maskKey, "server frames are not masked")
            XCTAssertEqual(frames.first?.data, payload)
        }
    }
}
