import NIOCore

/// One entry of a Redis stream as `XREAD` and `XRANGE` return it: its id and its field-value
/// pairs.
public struct RedisStreamEntry: Sendable, Hashable {
    /// `<milliseconds>-<sequence>`, increasing along the stream.
    public var id: String
    public var fields: [String: ByteBuffer]

    public init(id: String, fields: [String: ByteBuffer]) {
        self.id = id
        self.fields = fields
    }

    /// The entries of an `XRANGE` or `XREVRANGE` reply: an array of `[id, [field, value, …]]`.
    public static func entries(ofRange reply: RedisReply) throws(RedisClientError) -> [RedisStreamEntry] {
        if case .error(let message) = reply { throw .commandFailed(message) }
        guard let elements = reply.array else { throw .protocolError("unexpected stream entries: \(reply)") }
        var entries: [RedisStreamEntry] = []
        entries.reserveCapacity(elements.count)
        for element in elements {
            entries.append(try Self(element))
        }
        return entries
    }

    /// The entries of a one-stream `XREAD` reply: `[[stream, entries]]`, or a null reply when the
    /// block timed out with nothing new (no entries).
    public static func entries(ofRead reply: RedisReply) throws(RedisClientError) -> [RedisStreamEntry] {
        switch reply {
        case .null:
            return []
        case .error(let message):
            throw .commandFailed(message)
        case .array(let streams):
            guard streams.count == 1, let stream = streams[0].array, stream.count == 2 else {
                throw .protocolError("unexpected XREAD reply: \(reply)")
            }
            return try entries(ofRange: stream[1])
        default:
            throw .protocolError("unexpected XREAD reply: \(reply)")
        }
    }

    private init(_ reply: RedisReply) throws(RedisClientError) {
        guard let pair = reply.array, pair.count == 2, let id = pair[0].string else {
            throw .protocolError("unexpected stream entry: \(reply)")
        }
        var fields: [String: ByteBuffer] = [:]
        // A deleted entry still listed (possible in consumer-group histories) has no fields.
        if case .array(let values) = pair[1] {
            guard values.count % 2 == 0 else { throw .protocolError("stream entry \(id) has an odd field list") }
            for index in stride(from: 0, to: values.count, by: 2) {
                guard let name = values[index].string, case .bulk(let value) = values[index + 1] else {
                    throw .protocolError("stream entry \(id) has a field that is not a string")
                }
                fields[name] = value
            }
        }
        self.init(id: id, fields: fields)
    }
}
