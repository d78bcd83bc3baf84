import NIOCore
import NIOWebSocket

/// Cuts a WebSocket connection's bytes into frames and joins fragmented messages: the work of
/// NIO's `WebSocketFrameDecoder` (inside a `ByteToMessageHandler`) followed by
/// `NIOWebSocketFrameAggregator`, with the same limits and the same errors.
///
/// Those handlers, their buffers and their pipeline contexts cost about 700 bytes per
/// connection, idle or not. This value lives inside the transport handler and keeps nothing
/// between reads unless a frame or a fragmented message is cut across them.
struct WebSocketFrameReader {
    /// The largest frame, and the largest reassembled message.
    private let maxSize: Int
    /// The most fragments one message may arrive in (`NIOWebSocketFrameAggregator`'s limit).
    private static let maxFragmentCount = 1024
    /// The bytes not cut into frames yet: during a read the channel's buffer itself, between
    /// reads only the start of a frame whose end has not arrived, copied.
    private var buffer: ByteBuffer?
    /// A fragmented message: the opcode of its first frame, its unmasked data so far and
    /// how many frames it came in.
    private var fragments: (opcode: WebSocketOpcode, data: ByteBuffer, count: Int)?

    init(maxSize: Int) {
        self.maxSize = maxSize
    }

    /// Takes the bytes of one read; `next()` then returns its messages, `finishRead()` ends it.
    mutating func append(_ bytes: ByteBuffer) {
        if var buffer = self.buffer {
            self.buffer = nil
            buffer.writeImmutableBuffer(bytes)
            self.buffer = buffer
        } else {
            self.buffer = bytes
        }
    }

    /// The next complete message or control frame, nil when the bytes so far hold no more.
    /// Throws `NIOWebSocketError` or `NIOWebSocketFrameAggregator.Error`; the connection is
    /// then unusable and what was held is dropped.
    mutating func next() throws -> WebSocketFrame? {
        guard var buffer = self.buffer else { return nil }
        self.buffer = nil
        defer { self.buffer = buffer }
        do {
            while let frame = try Self.readFrame(from: &buffer, maxSize: self.maxSize) {
                if let message = try self.assemble(frame) {
                    return message
                }
            }
            return nil
        } catch {
            self.fragments = nil
            buffer.clear()
            throw error
        }
    }

    /// Ends a read: a frame cut short is copied out of the channel's buffer, so the channel can
    /// reuse that buffer for the next read; nothing is kept otherwise.
    mutating func finishRead() {
        guard var buffer = self.buffer else { return }
        self.buffer = nil
        if buffer.readableBytes > 0 {
            var rest = ByteBufferAllocator().buffer(capacity: buffer.readableBytes)
            rest.writeBuffer(&buffer)
            self.buffer = rest
        }
    }

    /// Bytes held between reads: the start of a frame cut short.
    var heldByteCount: Int { self.buffer?.readableBytes ?? 0 }

    /// Drops what was held, as the connection goes away.
    mutating func reset() {
        self.buffer = nil
        self.fragments = nil
    }

    private mutating func assemble(_ frame: WebSocketFrame) throws -> WebSocketFrame? {
        switch frame.opcode {
        case .continuation:
            guard var fragments = self.fragments else {
                throw NIOWebSocketFrameAggregator.Error.didReceiveFragmentBeforeReceivingTextOrBinaryFrame
            }
            self.fragments = nil
            try self.checkFragment(frame, count: fragments.count, size: fragments.data.readableBytes)
            var data = frame.unmaskedData
            fragments.data.writeBuffer(&data)
            fragments.count += 1
            guard frame.fin else {
                self.fragments = fragments
                return nil
            }
            return WebSocketFrame(fin: true, opcode: fragments.opcode, data: fragments.data)
        case .text, .binary:
            guard self.fragments == nil else {
                throw NIOWebSocketFrameAggregator.Error.receivedNewFrameWithoutFinishingPrevious
            }
            if frame.fin {
                return frame
            }
            try self.checkFragment(frame, count: 0, size: 0)
            self.fragments = (frame.opcode, frame.unmaskedData, 1)
            return nil
        default:
            return frame
        }
    }

    private func checkFragment(_ frame: WebSocketFrame, count: Int, size: Int) throws {
        guard count < Self.maxFragmentCount, frame.fin || count + 1 < Self.maxFragmentCount else {
            throw NIOWebSocketFrameAggregator.Error.tooManyFragments
        }
        guard size + frame.length <= self.maxSize else {
            throw NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge
        }
    }

    /// One frame from the front of `buffer`, nil when it is not all there yet (the buffer is
    /// then left as it was). Limits are checked as soon as the header is in.
    private static func readFrame(from buffer: inout ByteBuffer, maxSize: Int) throws -> WebSocketFrame? {
        let start = buffer.readerIndex
        guard let first = buffer.getInteger(at: start, as: UInt8.self),
              let second = buffer.getInteger(at: start + 1, as: UInt8.self)
        else { return nil }
        var offset = start + 2
        var length: Int
        switch second & 0x7F {
        case 126:
            guard let word = buffer.getInteger(at: offset, as: UInt16.self) else { return nil }
            length = Int(word)
            offset += 2
        case 127:
            guard let word = buffer.getInteger(at: offset, as: UInt64.self) else { return nil }
            guard word <= UInt64(maxSize) else { throw NIOWebSocketError.invalidFrameLength }
            length = Int(word)
            offset += 8
        case let short:
            length = Int(short)
        }
        guard length <= maxSize else { throw NIOWebSocketError.invalidFrameLength }
        let isFinal = first & 0x80 != 0
        let isControl = first & 0x08 != 0
        if isControl && !isFinal { throw NIOWebSocketError.fragmentedControlFrame }
        if isControl && length > 125 { throw NIOWebSocketError.multiByteControlFrameLength }
        var maskKey: WebSocketMaskingKey?
        if second & 0x80 != 0 {
            guard let bytes = buffer.getBytes(at: offset, length: 4) else { return nil }
            maskKey = WebSocketMaskingKey(bytes)
            offset += 4
        }
        guard let data = buffer.getSlice(at: offset, length: length) else { return nil }
        buffer.moveReaderIndex(to: offset + length)
        return WebSocketFrame(
            fin: isFinal,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode: WebSocketOpcode(encodedWebSocketOpcode: first & 0x0F)!,
            maskKey: maskKey,
            data: data
        )
    }
}
