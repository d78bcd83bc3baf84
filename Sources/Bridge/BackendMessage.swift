import NIOCore
import SidecastJSON
import SocketIO

/// The lines sidecast writes to backends (PROTOCOL.md §4), built as JSON values.
enum BackendMessage {
    static func welcome(node: String) -> JSONValue {
        ["type": "welcome", "version": 1, "node": .string(node)]
    }

    /// A `connect`; `req` makes it an authorization question, `resumed` marks a replay (§3).
    static func connect(
        sid: String,
        namespace: String,
        auth: JSONValue?,
        handshake: JSONValue,
        data: JSONValue,
        req: Int? = nil,
        resumed: Bool = false,
        recovered: Bool = false,
        rooms: [String]? = nil
    ) -> JSONValue {
        JSONValue.object([
            "type": "connect",
            "sid": .string(sid),
            "nsp": .string(namespace),
            "auth": auth ?? .null,
            "handshake": handshake,
            "data": data,
        ]).adding([
            ("req", req.map { .int(Int64($0)) }),
            ("resumed", resumed ? true : nil),
            ("recovered", recovered ? true : nil),
            ("rooms", rooms.map { .array($0.map { .string($0) }) }),
        ])
    }

    static func connect(_ socket: SocketIOSocket, resumed: Bool) -> JSONValue {
        connect(
            sid: socket.id,
            namespace: socket.namespace.name,
            auth: socket.auth,
            handshake: socket.handshake.json,
            data: socket.data,
            resumed: resumed,
            recovered: socket.recovered,
            rooms: socket.recovered ? socket.roomsOwnFirst : nil
        )
    }

    /// An `event` line with its "\n", printed without building the message as a value: the
    /// arguments go from the client's parsed packet straight into the line
    /// (`SocketIOEvent.writeArguments`) and jansson prints every other value between the
    /// fixed keys. The text is what printing the whole message as a `JSONValue` gives:
    /// `{"type":"event","sid":…,"nsp":…,"event":…,"args":[…],"ack":…}`, `ack` only when asked.
    static func eventLine(sid: String, namespace: String, event: SocketIOEvent, allocator: ByteBufferAllocator) -> ByteBuffer {
        var line = allocator.buffer(capacity: 512)
        line.writeStaticString(#"{"type":"event","sid":"#)
        JSONValue.string(sid).write(to: &line)
        line.writeStaticString(#","nsp":"#)
        JSONValue.string(namespace).write(to: &line)
        line.writeStaticString(#","event":"#)
        event.writeName(to: &line)
        line.writeStaticString(#","args":"#)
        event.writeArguments(to: &line)
        if let ack = event.ackID {
            line.writeStaticString(#","ack":"#)
            JSONValue.int(Int64(ack)).write(to: &line)
        }
        line.writeStaticString("}\n")
        return line
    }

    static func disconnect(sid: String, namespace: String, reason: DisconnectReason) -> JSONValue {
        ["type": "disconnect", "sid": .string(sid), "nsp": .string(namespace), "reason": .string(reason.rawValue)]
    }

    static func serverEvent(namespace: String, event: String, args: [JSONValue], node: String, ack: Int?) -> JSONValue {
        JSONValue.object([
            "type": "serverEvent",
            "nsp": .string(namespace),
            "event": .string(event),
            "args": .array(args),
            "node": .string(node),
        ]).adding([("ack", ack.map { .int(Int64($0)) })])
    }

    /// A successful `reply`; `fields` sit beside `ok`.
    static func reply(id: JSONValue, fields: [(String, JSONValue)] = []) -> JSONValue {
        JSONValue.object(["type": "reply", "id": id, "ok": true]).adding(fields.map { ($0, $1) })
    }

    static func reply(id: JSONValue, error: BridgeError, fields: [(String, JSONValue)] = []) -> JSONValue {
        JSONValue.object([
            "type": "reply", "id": id, "ok": false,
            "error": ["code": .string(error.code), "message": .string(error.message)],
        ]).adding(fields.map { ($0, $1) })
    }

    static func error(_ error: BridgeError, line: String) -> JSONValue {
        [
            "type": "error",
            "error": ["code": .string(error.code), "message": .string(error.message)],
            "line": .string(line),
        ]
    }

    static let shutdown: JSONValue = ["type": "shutdown"]
}

extension JSONValue {
    /// This object with the given members appended; `nil` values are left out.
    fileprivate func adding(_ fields: [(String, JSONValue?)]) -> JSONValue {
        guard case .object(var members) = self else { return self }
        for case (let key, let value?) in fields { members[key] = value }
        return .object(members)
    }
}
