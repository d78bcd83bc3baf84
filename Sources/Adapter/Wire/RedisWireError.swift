import NIOCore
import OrderedCollections
import SidecastJSON

/// Why a message read from a Redis channel could not be understood.
///
/// The Node adapter ignores such messages (with a debug log), and so should its callers here.
public enum RedisWireError: Error, Hashable, CustomStringConvertible {
    case messagePack(MessagePackError)
    case json(JSONError)
    /// The message decoded, but lacks a member or has one of the wrong type.
    case malformed(String)
    /// A request `type` this node does not serve (`SOCKETS`, from adapters before 8.0, is one).
    case unsupportedRequestType(Int64)

    public var description: String {
        switch self {
        case .messagePack(let error): return "redis adapter message: \(error)"
        case .json(let error): return "redis adapter message: \(error)"
        case .malformed(let reason): return "redis adapter message: \(reason)"
        case .unsupportedRequestType(let type): return "redis adapter message: unsupported request type \(type)"
        }
    }
}

/// Shared pieces of the adapter's two encodings: JSON for most requests and responses,
/// msgpack for broadcasts and for whatever may carry binary data.
enum RedisWire {
    /// JSON text as `JSON.stringify` writes it in Node.
    ///
    /// Binary data in a JSON message is what `Buffer.prototype.toJSON` makes of it,
    /// `{"type":"Buffer","data":[bytes...]}`, the same a Node node would publish.
    static func json(_ value: JSONValue) -> ByteBuffer {
        var buffer = ByteBuffer()
        value.write(to: &buffer) { bytes in
            ["type": "Buffer", "data": .array(bytes.readableBytesView.map { .int(Int64($0)) })]
        }
        return buffer
    }

    /// Decodes a request or response the way the Node adapter does: JSON when the first byte
    /// is `{`, msgpack otherwise.
    static func decodeRequestOrResponse(_ bytes: ByteBuffer) throws(RedisWireError) -> OrderedDictionary<String, JSONValue> {
        let value: JSONValue
        if bytes.readableBytesView.first == UInt8(ascii: "{") {
            do {
                value = try JSONValue(parsing: bytes)
            } catch {
                throw .json(error)
            }
        } else {
            do {
                value = try MessagePack.decode(bytes)
            } catch {
                throw .messagePack(error)
            }
        }
        guard case .object(let members) = value else { throw .malformed("not an object") }
        return members
    }

    static func string(_ members: OrderedDictionary<String, JSONValue>, _ key: String) throws(RedisWireError) -> String {
        guard case .string(let text)? = members[key] else { throw .malformed("\"\(key)\" is not a string") }
        return text
    }

    /// A member that Node treats as absent when it is `undefined`, which JSON omits.
    static func optionalString(_ members: OrderedDictionary<String, JSONValue>, _ key: String) throws(RedisWireError) -> String? {
        switch members[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw .malformed("\"\(key)\" is not a string")
        }
    }

    static func integer(_ members: OrderedDictionary<String, JSONValue>, _ key: String) throws(RedisWireError) -> Int64 {
        guard let value = members[key]?.intValue else { throw .malformed("\"\(key)\" is not an integer") }
        return value
    }

    /// Room names: Socket.IO lets Node code use numbers as rooms (`io.to(42)`), and the adapter
    /// publishes them as numbers; an integer names the same room as its decimal text.
    static func rooms(_ value: JSONValue?, _ key: String) throws(RedisWireError) -> [String] {
        guard let value, !value.isNull else { return [] }
        guard case .array(let elements) = value else { throw .malformed("\"\(key)\" is not an array") }
        var rooms: [String] = []
        rooms.reserveCapacity(elements.count)
        for element in elements {
            switch element {
            case .string(let room): rooms.append(room)
            case .int(let number): rooms.append(String(number))
            default: throw .malformed("\"\(key)\" holds a room that is not a string")
            }
        }
        return rooms
    }

    static func roomArray(_ rooms: [String]) -> JSONValue {
        .array(rooms.map { .string($0) })
    }
}
