import ExtrasBase64
import NIOCore
import OrderedCollections
import SidecastJSON

/// socket.io-adapter's cluster messages as `@socket.io/redis-streams-adapter` stores them in
/// its stream (`RedisStreamsAdapter.encode` and `decode` in its `lib/adapter.ts`): one entry per
/// message with the fields `uid`, `nsp`, `type` (the number as text) and, for messages with
/// data, `data`: `JSON.stringify(data)`, or for a kind that may carry binary and does carry
/// some, the msgpack of `data` in base64. A `data` starting with `{` is read as JSON, anything
/// else as base64 msgpack, as Node reads it.
///
/// Sidecast's stream client adds its entry number after these fields (`sidecast-seq`, see
/// `RedisStreamDuplicateFilter` in the Redis module); Node's `decode` ignores any other field,
/// and so does ``init(streamFields:)``.
extension ClusterMessage {
    /// The entry's fields, in the order Node writes them.
    public var streamFields: [(name: String, value: ByteBuffer)] {
        var fields: [(name: String, value: ByteBuffer)] = [
            ("uid", ByteBuffer(string: uid)),
            ("nsp", ByteBuffer(string: namespace)),
            ("type", ByteBuffer(string: String(type.rawValue))),
        ]
        guard let data else { return fields }
        if mayContainBinary, data.containsBinary {
            let packed = MessagePack.encode(data)
            fields.append(("data", ByteBuffer(string: Base64.encodeToString(bytes: packed.readableBytesView))))
        } else {
            fields.append(("data", RedisWire.json(data)))
        }
        return fields
    }

    /// Reads a stream entry's fields; `uid` and `type` are required, `nsp` defaults to `/`.
    public init(streamFields fields: [String: ByteBuffer]) throws(RedisWireError) {
        guard let uid = fields["uid"] else { throw .malformed("\"uid\" is missing") }
        guard let typeText = fields["type"] else { throw .malformed("\"type\" is missing") }
        guard let typeNumber = Int64(String(buffer: typeText)) else { throw .malformed("\"type\" is not a number") }
        guard let type = ClusterMessageType(rawValue: typeNumber) else { throw .unsupportedRequestType(typeNumber) }
        var data: OrderedDictionary<String, JSONValue> = [:]
        if let text = fields["data"], text.readableBytes > 0 {
            data = try Self.streamData(text)
        }
        self.init(
            uid: String(buffer: uid),
            namespace: fields["nsp"].map { String(buffer: $0) } ?? "/",
            body: try Self.body(type, data: data)
        )
    }

    private static func streamData(_ text: ByteBuffer) throws(RedisWireError) -> OrderedDictionary<String, JSONValue> {
        let value: JSONValue
        if text.readableBytesView.first == UInt8(ascii: "{") {
            do {
                value = try JSONValue(parsing: text)
            } catch {
                throw .json(error)
            }
        } else {
            guard let packed = try? Base64.decode(bytes: text.readableBytesView) else {
                throw .malformed("\"data\" is neither JSON nor base64")
            }
            do {
                value = try MessagePack.decode(ByteBuffer(bytes: packed))
            } catch {
                throw .messagePack(error)
            }
        }
        guard case .object(let members) = value else { throw .malformed("\"data\" is not an object") }
        return members
    }
}
