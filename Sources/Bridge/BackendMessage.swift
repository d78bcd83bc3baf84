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
        resumed: Bool = false
    ) -> JSONValue {
        var message: JSONValue = [
            "type": "connect",
            "sid": .string(sid),
            "nsp": .string(namespace),
            "auth": auth ?? .null,
            "handshake": handshake,
            "data": data,
        ]
        if case .object(var members) = message {
            if let req { members["req"] = .int(Int64(req)) }
            if resumed { members["resumed"] = true }
            message = .object(members)
        }
        return message
    }

    static func connect(_ socket: SocketIOSocket, resumed: Bool) -> JSONValue {
        connect(
            sid: socket.id,
            namespace: socket.namespace.name,
            auth: socket.auth,
            handshake: socket.handshake.json,
            data: socket.data,
            resumed: resumed
        )
    }

    static func event(sid: String, namespace: String, event: String, args: [JSONValue], ack: Int?) -> JSONValue {
        var message: JSONValue = [
            "type": "event",
            "sid": .string(sid),
            "nsp": .string(namespace),
            "event": .string(event),
            "args": .array(args),
        ]
        if let ack, case .object(var members) = message {
            members["ack"] = .int(Int64(ack))
            message = .object(members)
        }
        return message
    }

    static func disconnect(sid: String, namespace: String, reason: DisconnectReason) -> JSONValue {
        ["type": "disconnect", "sid": .string(sid), "nsp": .string(namespace), "reason": .string(reason.rawValue)]
    }

    /// A successful `reply`; `fields` sit beside `ok`.
    static func reply(id: JSONValue, fields: [(String, JSONValue)] = []) -> JSONValue {
        var message: JSONValue = ["type": "reply", "id": id, "ok": true]
        if case .object(var members) = message {
            for (key, value) in fields { members[key] = value }
            message = .object(members)
        }
        return message
    }

    static func reply(id: JSONValue, error: BridgeError, fields: [(String, JSONValue)] = []) -> JSONValue {
        var message: JSONValue = [
            "type": "reply", "id": id, "ok": false,
            "error": ["code": .string(error.code), "message": .string(error.message)],
        ]
        if case .object(var members) = message {
            for (key, value) in fields { members[key] = value }
            message = .object(members)
        }
        return message
    }

    static func error(_ error: BridgeError, line: String) -> JSONValue {
        [
            "type": "error",
            "error": ["code": .string(error.code), "message": .string(error.message)],
            "line": .string(line),
        ]
    }

    static func serverEvent(namespace: String, event: String, args: [JSONValue], node: String, ack: Int?) -> JSONValue {
        var message: JSONValue = [
            "type": "serverEvent",
            "nsp": .string(namespace),
            "event": .string(event),
            "args": .array(args),
            "node": .string(node),
        ]
        if let ack, case .object(var members) = message {
            members["ack"] = .int(Int64(ack))
            message = .object(members)
        }
        return message
    }

    static let shutdown: JSONValue = ["type": "shutdown"]
}
