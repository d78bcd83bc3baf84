import EngineIO
import NIOCore
import SidecastJSON

/// The wire format of the session relay (`--relay-sessions`): one msgpack array per message,
/// `[from, type, ...]`, published on the recipient node's channel `prefix#relay#node#`.
///
/// socket.io-cluster-engine publishes msgpack maps on `engine.io#node#`; sidecast's messages
/// are its own (a sid names its owner, so there is no lock to ask the cluster for), so they
/// keep off that prefix and go under the adapter's (`--redis-prefix`), which keeps clusters
/// sharing a Redis apart as it does for the adapter. Arrays rather than maps: a relayed poll
/// pays for every byte twice, to Redis and back.
///
/// | type | message | fields after the type |
/// | --- | --- | --- |
/// | 0 | request | id, sid, transport, method, kind, binary, body |
/// | 1 | requestClosed | id, sid |
/// | 2 | upgrade | id, sid |
/// | 3 | packets | id, sid, frames |
/// | 4 | webSocketClosed | id, sid, failed |
/// | 5 | webSocketReport | id, sid, writable, bufferedBytes |
/// | 6 | held | id |
/// | 7 | pollAnswer | id, body, binary |
/// | 8 | postAnswer | id, error code or nil |
/// | 9 | refused | id, error code |
/// | 10 | frames | [[id, frames]...] |
/// | 11 | closeWebSocket | id |
/// | 12 | readWebSocket | id, paused |
///
/// A frame is `[binary, bytes]`, its bytes as msgpack `bin` (a text frame's bytes are whatever
/// the client sent, not necessarily UTF-8).
public enum SessionRelayWire {
    /// The channel `node` listens on.
    public static func channel(prefix: String, node: RelayNode) -> String {
        "\(prefix)#relay#\(node.tag)#"
    }

    public static func encode(_ message: SessionRelayMessage, from sender: RelayNode) -> ByteBuffer {
        MessagePack.encode(.array([.string(sender.tag)] + fields(of: message)))
    }

    public static func decode(_ bytes: ByteBuffer) throws(RedisWireError) -> (message: SessionRelayMessage, from: RelayNode) {
        let value: JSONValue
        do {
            value = try MessagePack.decode(bytes)
        } catch {
            throw .messagePack(error)
        }
        guard case .array(let fields) = value, fields.count >= 2 else { throw .malformed("a relay message is not an array") }
        var reader = Reader(fields: fields[2...])
        guard case .string(let tag) = fields[0], let sender = RelayNode(tag: tag) else { throw .malformed("relay message sender") }
        guard case .int(let type) = fields[1] else { throw .malformed("relay message type") }
        let message: SessionRelayMessage
        switch type {
        case 0:
            let id = try reader.id(), sid = try reader.string(), transport = try reader.string(), method = try reader.string()
            guard let kind = RelayedRequestKind(rawValue: try reader.int()) else { throw .malformed("relayed request kind") }
            message = .request(id: id, sid: sid, transport: transport, method: method, kind: kind, binary: try reader.bool(), body: try reader.bytes())
        case 1: message = .requestClosed(id: try reader.id(), sid: try reader.string())
        case 2: message = .upgrade(id: try reader.id(), sid: try reader.string())
        case 3: message = .packets(id: try reader.id(), sid: try reader.string(), try reader.frames())
        case 4: message = .webSocketClosed(id: try reader.id(), sid: try reader.string(), failed: try reader.bool())
        case 5: message = .webSocketReport(id: try reader.id(), sid: try reader.string(), writable: try reader.bool(), bufferedBytes: try reader.int())
        case 6: message = .held(id: try reader.id())
        case 7: message = .pollAnswer(id: try reader.id(), body: try reader.bytes(), binary: try reader.bool())
        case 8: message = .postAnswer(id: try reader.id(), error: try reader.optionalInt())
        case 9: message = .refused(id: try reader.id(), error: try reader.int())
        case 10:
            guard case .array(let batches)? = reader.next() else { throw .malformed("relayed frames") }
            message = .frames(try batches.map { (batch) throws(RedisWireError) -> RelayedFrames in
                guard case .array(let members) = batch, members.count == 2 else { throw .malformed("relayed frames") }
                var reader = Reader(fields: members[...])
                return RelayedFrames(id: try reader.id(), frames: try reader.frames())
            })
        case 11: message = .closeWebSocket(id: try reader.id())
        case 12: message = .readWebSocket(id: try reader.id(), paused: try reader.bool())
        default: throw .unsupportedRequestType(type)
        }
        guard reader.fields.isEmpty else { throw .malformed("relay message of type \(type) has extra fields") }
        return (message, sender)
    }

    private static func fields(of message: SessionRelayMessage) -> [JSONValue] {
        switch message {
        case .request(let id, let sid, let transport, let method, let kind, let binary, let body):
            return [0, id.json, .string(sid), .string(transport), .string(method), .int(Int64(kind.rawValue)), .bool(binary), .binary(body)]
        case .requestClosed(let id, let sid): return [1, id.json, .string(sid)]
        case .upgrade(let id, let sid): return [2, id.json, .string(sid)]
        case .packets(let id, let sid, let frames): return [3, id.json, .string(sid), json(frames)]
        case .webSocketClosed(let id, let sid, let failed): return [4, id.json, .string(sid), .bool(failed)]
        case .webSocketReport(let id, let sid, let writable, let buffered):
            return [5, id.json, .string(sid), .bool(writable), .int(Int64(buffered))]
        case .held(let id): return [6, id.json]
        case .pollAnswer(let id, let body, let binary): return [7, id.json, .binary(body), .bool(binary)]
        case .postAnswer(let id, let error): return [8, id.json, error.map { .int(Int64($0)) } ?? .null]
        case .refused(let id, let error): return [9, id.json, .int(Int64(error))]
        case .frames(let batches): return [10, .array(batches.map { [$0.id.json, json($0.frames)] })]
        case .closeWebSocket(let id): return [11, id.json]
        case .readWebSocket(let id, let paused): return [12, id.json, .bool(paused)]
        }
    }

    private static func json(_ frames: [RelayedFrame]) -> JSONValue {
        .array(frames.map { [.bool($0.isBinary), .binary($0.bytes)] })
    }

    /// Reads a message's fields in order.
    private struct Reader {
        var fields: ArraySlice<JSONValue>

        mutating func next() -> JSONValue? { fields.popFirst() }

        mutating func id() throws(RedisWireError) -> UInt64 {
            guard case .int(let value)? = next() else { throw .malformed("relay message id") }
            return UInt64(bitPattern: value)
        }

        mutating func int() throws(RedisWireError) -> Int {
            guard case .int(let value)? = next() else { throw .malformed("relay message integer") }
            return Int(value)
        }

        mutating func optionalInt() throws(RedisWireError) -> Int? {
            switch next() {
            case .int(let value)?: return Int(value)
            case .null?: return nil
            default: throw .malformed("relay message integer or nil")
            }
        }

        mutating func string() throws(RedisWireError) -> String {
            guard case .string(let value)? = next() else { throw .malformed("relay message string") }
            return value
        }

        mutating func bool() throws(RedisWireError) -> Bool {
            guard case .bool(let value)? = next() else { throw .malformed("relay message boolean") }
            return value
        }

        mutating func bytes() throws(RedisWireError) -> ByteBuffer {
            guard case .binary(let value)? = next() else { throw .malformed("relay message bytes") }
            return value
        }

        mutating func frames() throws(RedisWireError) -> [RelayedFrame] {
            guard case .array(let frames)? = next() else { throw .malformed("relayed frames") }
            return try frames.map { (frame) throws(RedisWireError) -> RelayedFrame in
                guard case .array(let members) = frame, members.count == 2, case .bool(let binary) = members[0],
                      case .binary(let bytes) = members[1]
                else { throw .malformed("relayed frame") }
                return RelayedFrame(isBinary: binary, bytes: bytes)
            }
        }
    }
}

extension UInt64 {
    /// An id as msgpack carries it: the same 64 bits as a signed integer.
    fileprivate var json: JSONValue { .int(Int64(bitPattern: self)) }
}
