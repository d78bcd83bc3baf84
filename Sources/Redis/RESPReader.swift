import CHiredis
import NIOCore

/// Owns one hiredis `redisReader`, which keeps its own buffer of unparsed bytes between reads.
///
/// Not Sendable: the C reader has no locking, so it lives on its connection's event loop.
final class RESPReader {
    private let reader: UnsafeMutablePointer<redisReader>

    /// Nil when hiredis cannot allocate a reader.
    init?() {
        guard let reader = redisReaderCreate() else { return nil }
        self.reader = reader
    }

    deinit {
        redisReaderFree(self.reader)
    }

    func feed(_ buffer: ByteBuffer) throws {
        let status = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(self.reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK { throw self.error }
    }

    /// The next complete reply, or nil when the bytes fed so far end inside one.
    func next(allocator: ByteBufferAllocator) throws -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(self.reader, &raw) == REDIS_OK else { throw self.error }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RESPReader.convert(raw.assumingMemoryBound(to: redisReply.self), allocator: allocator)
    }

    private var error: RedisClientError {
        // `redisReaderGetError` is a macro; `errstr` is a NUL-terminated char[128] that Swift sees as a tuple.
        let message = withUnsafeBytes(of: &self.reader.pointee.errstr) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return .protocolError(message.isEmpty ? "unreadable reply" : message)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>, allocator: ByteBufferAllocator) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .bulk(allocator.buffer(bytes: UnsafeRawBufferPointer(start: value.str, count: value.len)))
        case REDIS_REPLY_STATUS:
            return .status(string(value))
        case REDIS_REPLY_ERROR:
            return .error(string(value))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).map { index in
                value.element[index].map { convert($0, allocator: allocator) } ?? .null
            })
        default:
            return .null
        }
    }

    private static func string(_ reply: redisReply) -> String {
        String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self)
    }
}
