import NIOCore
import NIOWebSocket
import XCTest

@testable import EngineIO

/// `WebSocketFrameReader` against the behaviour of NIO's frame decoder and aggregator it
/// replaces: frames cut anywhere across reads, fragments joined, the same limits and errors.
final class WebSocketFrameReaderTests: XCTestCase {
    private func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count <= Int(UInt16.max) {
            bytes.append(maskBit | 126)
            bytes += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(maskBit | 127)
            bytes += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        guard masked else { return bytes + payload }
        let mask: [UInt8] = [0xA1, 0x02, 0x73, 0x44]
        return bytes + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// Feeds `reads` one by one; returns (opcode, unmasked payload) of every message.
    private func read(_ reads: [[UInt8]], maxSize: Int = 1000, reader: inout WebSocketFrameReader) throws -> [(WebSocketOpcode, String)] {
        var messages: [(WebSocketOpcode, String)] = []
        for bytes in reads {
            reader.append(ByteBuffer(bytes: bytes))
            while let message = try reader.next() {
                messages.append((message.opcode, String(buffer: message.unmaskedData)))
            }
            reader.finishRead()
        }
        return messages
    }

    private func read(_ reads: [[UInt8]], maxSize: Int = 1000) throws -> [(WebSocketOpcode, String)] {
        var reader = WebSocketFrameReader(maxSize: maxSize)
        return try self.read(reads, maxSize: maxSize, reader: &reader)
    }

    func testFramesCutAtEveryByteAcrossReads() throws {
        let bytes = self.frame(0x1, Array("4hello".utf8)) + self.frame(0x2, [1, 2, 3])
            + self.frame(0x1, Array(repeating: UInt8(ascii: "x"), count: 300))
        var reader = WebSocketFrameReader(maxSize: 1000)
        let messages = try self.read(bytes.map { [$0] }, reader: &reader)
        XCTAssertEqual(messages.map(\.0), [.text, .binary, .text])
        XCTAssertEqual(messages[0].1, "4hello")
        XCTAssertEqual(messages[2].1, String(repeating: "x", count: 300))
        XCTAssertEqual(reader.heldByteCount, 0)
    }

    func testSeveralFramesInOneReadAndAPartialOneKept() throws {
        var reader = WebSocketFrameReader(maxSize: 1000)
        let third = self.frame(0x1, Array("4c".utf8))
        let messages = try self.read([self.frame(0x1, Array("4a".utf8)) + self.frame(0x1, Array("4b".utf8)) + third.prefix(3)],
                                     reader: &reader)
        XCTAssertEqual(messages.map(\.1), ["4a", "4b"])
        XCTAssertEqual(reader.heldByteCount, 3)
        XCTAssertEqual(try self.read([Array(third.dropFirst(3))], reader: &reader).map(\.1), ["4c"])
        XCTAssertEqual(reader.heldByteCount, 0)
    }

    func testUnmaskedFramesAreRead() throws {
        XCTAssertEqual(try self.read([self.frame(0x1, Array("4plain".utf8), masked: false)]).map(\.1), ["4plain"])
    }

    func testFragmentsAreJoinedAroundAControlFrame() throws {
        let messages = try self.read([
            self.frame(0x1, Array("4he".utf8), fin: false),
            self.frame(0x9, [7]),
            self.frame(0x0, Array("ll".utf8), fin: false),
            self.frame(0x0, Array("o".utf8)),
        ])
        XCTAssertEqual(messages.map(\.0), [.ping, .text])
        XCTAssertEqual(messages[1].1, "4hello")
    }

    func testLimitsAndErrorsMatchNIO() {
        func error(_ reads: [[UInt8]], maxSize: Int = 10) -> Error? {
            XCTAssertThrowsError(try self.read(reads, maxSize: maxSize)) { _ in }
            do { _ = try self.read(reads, maxSize: maxSize) } catch { return error }
            return nil
        }
        // Refused from the header alone, before the payload arrives.
        XCTAssertEqual(error([Array(self.frame(0x1, Array(repeating: 0, count: 11)).prefix(2))]) as? NIOWebSocketError,
                       .invalidFrameLength)
        XCTAssertEqual(error([self.frame(0x9, [1], fin: false)]) as? NIOWebSocketError, .fragmentedControlFrame)
        XCTAssertEqual(error([self.frame(0x9, Array(repeating: 0, count: 126))], maxSize: 1000) as? NIOWebSocketError,
                       .multiByteControlFrameLength)
        XCTAssertEqual(error([self.frame(0x1, Array(repeating: 0, count: 6), fin: false), self.frame(0x0, Array(repeating: 0, count: 6))])
                       as? NIOWebSocketFrameAggregator.Error, .accumulatedFrameSizeIsTooLarge)
        XCTAssertEqual(error([self.frame(0x0, [1])]) as? NIOWebSocketFrameAggregator.Error,
                       .didReceiveFragmentBeforeReceivingTextOrBinaryFrame)
        XCTAssertEqual(error([self.frame(0x1, [1], fin: false), self.frame(0x1, [2])]) as? NIOWebSocketFrameAggregator.Error,
                       .receivedNewFrameWithoutFinishingPrevious)
        let tooMany = [self.frame(0x1, [], fin: false)] + Array(repeating: self.frame(0x0, [], fin: false), count: 1023)
        XCTAssertEqual(error(tooMany) as? NIOWebSocketFrameAggregator.Error, .tooManyFragments)
    }

    func testAFrameErrorClosesWithProtocolError() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        try connection.sendFrame(opcode: TestFrame.pingOpcode, payload: [1], fin: false)
        XCTAssertEqual(try connection.readFrames(), [TestFrame(opcode: TestFrame.closeOpcode, payload: [0x03, 0xEA])])
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
    }
}
