import CHiredis
import NIOCore

/// Owns one hiredis `redisReader`, which keeps its own buffer of unparsed bytes between reads.
///
/// Not Sendable: the C reader has no locking, so it lives on its connection's event loop.
final class RESPReader {
    /// The most elements one array reply may announce. hiredis 0.14 allocates an array's element
    /// pointers as soon as it reads the header, so the 15 bytes `*2147483647\r\n` ask for 16 GiB
    /// before any element has arrived (found with Fuzz/FuzzRedis); hiredis 1.0 bounds this with
    /// `maxelements`, 0.14 has no such setting. The largest replies sidecast reads (CLUSTER
    /// SLOTS, PUBSUB NUMSUB) have thousands of elements at most.
    static let maximumArrayElements: Int32 = 1 << 20

    private let reader: UnsafeMutablePointer<redisReader>
    /// hiredis's reply constructors with `createArray` bounded; the reader points at this copy.
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>
    private let hiredisCreateArray: @convention(c) (UnsafePointer<redisReadTask>?, Int32) -> UnsafeMutableRawPointer?
    /// The size of the array refused for exceeding the limit, which hiredis reports as out of memory.
    private var refusedArrayElements: Int32?

    /// Nil when hiredis cannot allocate a reader.
    init?() {
        guard let reader = redisReaderCreate() else { return nil }
        guard let defaults = reader.pointee.fn, let createArray = defaults.pointee.createArray else {
            redisReaderFree(reader)
            return nil
        }
        self.reader = reader
        self.hiredisCreateArray = createArray
        self.functions = .allocate(capacity: 1)
        self.functions.initialize(to: defaults.pointee)
        // hiredis hands each read task the reader's privdata: it leads the callback back here.
        self.functions.pointee.createArray = { task, elements in
            guard let task, let owner = task.pointee.privdata else { return nil }
            return Unmanaged<RESPReader>.fromOpaque(owner).takeUnretainedValue().createArray(task, elements)
        }
        reader.pointee.fn = self.functions
        reader.pointee.privdata = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        redisReaderFree(self.reader)
        self.functions.deallocate()
    }

    private func createArray(_ task: UnsafePointer<redisReadTask>, _ elements: Int32) -> UnsafeMutableRawPointer? {
        guard elements <= Self.maximumArrayElements else {
            self.refusedArrayElements = elements
            return nil
        }
        return self.hiredisCreateArray(task, elements)
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
        if let elements = self.refusedArrayElements {
            return .protocolError("an array reply of \(elements) elements, over the limit of \(Self.maximumArrayElements)")
        }
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
