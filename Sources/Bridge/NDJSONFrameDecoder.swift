import NIOCore

/// One unit read from a backend: a complete line, or the news that a line was too long.
public enum NDJSONFrame: Equatable, Sendable {
    /// A line without its terminating "\n" (a trailing "\r" is dropped too).
    case line(ByteBuffer)
    /// A line longer than the limit was skipped up to its "\n"; reading goes on after it.
    case tooLong(bytes: Int)
}

/// Splits a byte stream into newline-terminated lines, bounded by `maxLineLength`.
///
/// An oversized line is not kept in memory: the decoder reports it once, discards bytes until
/// the next newline and carries on, so one bad line loses nothing that follows it.
public struct NDJSONFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = NDJSONFrame

    private let maxLineLength: Int
    /// Bytes of the current line already scanned without finding "\n".
    private var scanned = 0
    /// Bytes of an oversized line discarded so far; non-nil while skipping one.
    private var skipping: Int?

    public init(maxLineLength: Int) {
        self.maxLineLength = maxLineLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = nextFrame(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while let frame = nextFrame(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(frame))
        }
        // A final line without "\n" is still a line: `printf '{...}' | socat` sends exactly that.
        if seenEOF, skipping == nil, buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            scanned = 0
            context.fireChannelRead(Self.wrapInboundOut(.line(Self.trimmingCR(rest))))
        }
        return .needMoreData
    }

    /// The next frame in `buffer`, consuming it; `nil` when more bytes are needed.
    mutating func nextFrame(_ buffer: inout ByteBuffer) -> NDJSONFrame? {
        let view = buffer.readableBytesView
        let searchStart = view.startIndex + scanned
        if let newline = view[searchStart...].firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - view.startIndex
            scanned = 0
            if let skipped = skipping {
                skipping = nil
                buffer.moveReaderIndex(forwardBy: length + 1)
                return .tooLong(bytes: skipped + length)
            }
            if length > maxLineLength {
                buffer.moveReaderIndex(forwardBy: length + 1)
                return .tooLong(bytes: length)
            }
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            return .line(Self.trimmingCR(line))
        }
        if skipping != nil || view.count > maxLineLength {
            skipping = (skipping ?? 0) + view.count
            buffer.moveReaderIndex(forwardBy: view.count)
            scanned = 0
        } else {
            scanned = view.count
        }
        return nil
    }

    private static func trimmingCR(_ line: ByteBuffer) -> ByteBuffer {
        guard line.readableBytesView.last == UInt8(ascii: "\r") else { return line }
        return line.getSlice(at: line.readerIndex, length: line.readableBytes - 1)!
    }
}
