import NIOCore

/// One RESP2 reply as Redis sent it.
///
/// Error replies are values, not thrown errors: a reply to `EXEC` can hold errors next to results,
/// and the caller decides what an error means for its command.
public enum RedisReply: Sendable, Hashable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk(ByteBuffer)
    case array([RedisReply])
    /// A null bulk string or a null array: hiredis 0.14 reads both as nil.
    case null
}

extension RedisReply {
    /// The text of a status or bulk reply.
    public var string: String? {
        switch self {
        case .status(let text):
            return text
        case .bulk(let buffer):
            return String(buffer: buffer)
        case .error, .integer, .array, .null:
            return nil
        }
    }

    /// The value of an integer reply.
    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of an array reply.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }
}
