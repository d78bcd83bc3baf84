import NIOCore
import NIOEmbedded
import NIOWebSocket
import XCTest

@testable import EngineIO

final class WebSocketFrameReaderTests: XCTestCase {
    /// Client frames (masked) as NIO's own encoder writes them.
    private func clientBytes(_ frames: [WebSocketFrame]) throws -> ByteBuffer {
        let encoder = EmbeddedChannel(handler: WebSocketFrameEncoder())
        var bytes = ByteBuffer()
        for frame in frames {
            try encoder.writeOutbound(frame)
            while var part = try encoder.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        }
        return bytes
    }

    private func frame(_ text: String, opcode: WebSocketOpcode = .text) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: opcode, maskKey: [1, 2, 3, 4], data: ByteBuffer(string: text))
    }

    private func readFrames(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    func testFramesSplitAtEveryByteArriveWhole() throws {
        let sent = [frame("4hello"), frame(""), frame(String(repeating: "y", count: 300), opcode: .binary)]
        let bytes = try self.clientBytes(sent)
        for split in 1..<bytes.readableBytes {
            let channel = EmbeddedChannel(handler: WebSocketFrameReader(maxFrameSize: 1000))
            try channel.writeInbound(bytes.getSlice(at: 0, length: split)!)
            try channel.writeInbound(bytes.getSlice(at: split, length: bytes.readableBytes - split)!)
            let frames = try self.readFrames(channel)
            XCTAssertEqual(frames.map(\.opcode), [.text, .text, .binary], "split at \(split)")
            XCTAssertEqual(frames.map { String(buffer: $0.unmaskedData) },
                           ["4hello", "", String(repeating: "y", count: 300)], "split at \(split)")
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    func testOversizedFrameFailsOnceAndLaterBytesAreDropped() throws {
        let channel = EmbeddedChannel(handler: WebSocketFrameReader(maxFrameSize: 10))
        XCTAssertThrowsError(try channel.writeInbound(try self.clientBytes([frame(String(repeating: "x", count: 11))]))) {
            XCTAssertEqual($0 as? NIOWebSocketError, .invalidFrameLength)
        }
        XCTAssertNoThrow(try channel.writeInbound(try self.clientBytes([frame("4ok")])))
        XCTAssertEqual(try self.readFrames(channel).count, 0)
    }

    func testAnIncompleteFrameDoesNotHoldTheReceiveBuffer() throws {
        let channel = EmbeddedChannel(handler: WebSocketFrameReader(maxFrameSize: 1000))
        let bytes = try self.clientBytes([frame("4hello")])
        var received = ByteBuffer(bytes: bytes.getBytes(at: 0, length: 4)!)
        try channel.writeInbound(received)
        XCTAssertTrue(received.modifyIfUniquelyOwned { _ in true } ?? false,
                      "the reader copied what it keeps rather than keeping the read buffer")
        try channel.writeInbound(bytes.getSlice(at: 4, length: bytes.readableBytes - 4)!)
        XCTAssertEqual(try self.readFrames(channel).map { String(buffer: $0.unmaskedData) }, ["4hello"])
    }
}
