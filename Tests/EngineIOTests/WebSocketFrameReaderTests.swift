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

    /// Feeds `bytes` in reads of `readSize` bytes, as NIO does with its 16 KiB receive buffer.
    private func feed(_ bytes: ByteBuffer, readSize: Int, to channel: EmbeddedChannel) throws {
        var rest = bytes
        while let read = rest.readSlice(length: min(readSize, rest.readableBytes)), read.readableBytes > 0 {
            try channel.writeInbound(read)
        }
    }

    /// A 1 MB or 4 MB frame arrives in 16 KiB reads (64 or 256 of them): each payload byte is
    /// copied at most twice, once out of its read and once when the chunks are joined. Copying
    /// the part received on every read, as the reader once did, copies 32 MB and 512 MB.
    func testLargeFramesAreAssembledInLinearTime() throws {
        for size in [1 << 20, 4 << 20] {
            let payload = ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            let sent = WebSocketFrame(fin: true, opcode: .binary, maskKey: [9, 8, 7, 6], data: payload)
            let reader = WebSocketFrameReader(maxFrameSize: 4 << 20)
            let channel = EmbeddedChannel(handler: reader)
            try self.feed(try self.clientBytes([sent, frame("4after")]), readSize: 16 * 1024, to: channel)
            let frames = try self.readFrames(channel)
            XCTAssertEqual(frames.map(\.opcode), [.binary, .text])
            XCTAssertEqual(frames.first?.unmaskedData, payload, "\(size) bytes")
            XCTAssertEqual(frames.last.map { String(buffer: $0.unmaskedData) }, "4after")
            XCTAssertLessThanOrEqual(reader.bytesCopied, 2 * size, "\(size) bytes")
            XCTAssertGreaterThanOrEqual(reader.bytesCopied, size, "the payload does come out of the reads")
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    /// Frames of every header form, in reads of sizes that split headers and payloads anywhere.
    func testFramesOfEveryLengthSurviveAnySplit() throws {
        let sizes = [0, 1, 125, 126, 65_535, 65_536, 200_000, 3]
        let sent = sizes.enumerated().map { index, size in
            WebSocketFrame(fin: true, opcode: .binary, maskKey: [1, 2, 3, UInt8(index)],
                           data: ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ index) }))
        }
        let payloads = sent.map(\.data)
        let bytes = try self.clientBytes(sent)
        for readSize in [13, 1000, 16_384, 65_537, bytes.readableBytes] {
            let reader = WebSocketFrameReader(maxFrameSize: 1 << 20)
            let channel = EmbeddedChannel(handler: reader)
            try self.feed(bytes, readSize: readSize, to: channel)
            XCTAssertEqual(try self.readFrames(channel).map(\.unmaskedData), payloads, "reads of \(readSize)")
            XCTAssertLessThanOrEqual(reader.bytesCopied, 2 * bytes.readableBytes, "reads of \(readSize)")
            XCTAssertTrue(try channel.finish().isClean)
        }
    }

    /// A 16-bit and a 64-bit length header, with and without payload in the same read, split at
    /// every byte of the header and a few beyond.
    func testLongHeadersSplitAtEveryByteArriveWhole() throws {
        for size in [300, 70_000] {
            let payload = ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0) })
            let bytes = try self.clientBytes([WebSocketFrame(fin: true, opcode: .binary, maskKey: [5, 6, 7, 8], data: payload),
                                              frame("4next")])
            for split in 1...20 {
                let channel = EmbeddedChannel(handler: WebSocketFrameReader(maxFrameSize: 1 << 20))
                try channel.writeInbound(bytes.getSlice(at: 0, length: split)!)
                try self.feed(bytes.getSlice(at: split, length: bytes.readableBytes - split)!, readSize: 16_384, to: channel)
                let frames = try self.readFrames(channel)
                XCTAssertEqual(frames.first?.unmaskedData, payload, "\(size) bytes split at \(split)")
                XCTAssertEqual(frames.last.map { String(buffer: $0.unmaskedData) }, "4next", "\(size) bytes split at \(split)")
                XCTAssertTrue(try channel.finish().isClean)
            }
        }
    }

    /// A header announcing a frame over the limit fails before anything is kept for it.
    func testAnOversizedFrameAnnouncedInAHeaderSplitOverReadsFails() throws {
        let reader = WebSocketFrameReader(maxFrameSize: 1000)
        let channel = EmbeddedChannel(handler: reader)
        let bytes = try self.clientBytes([frame(String(repeating: "x", count: 70_000))])
        try channel.writeInbound(bytes.getSlice(at: 0, length: 5)!)
        XCTAssertThrowsError(try channel.writeInbound(bytes.getSlice(at: 5, length: 2000)!)) {
            XCTAssertEqual($0 as? NIOWebSocketError, .invalidFrameLength)
        }
        XCTAssertEqual(try self.readFrames(channel).count, 0)
    }
}
