import NIOCore
import SidecastJSON

/// Which sockets a command acts on: one local socket, or a room selector across the cluster.
public enum SocketSelector: Hashable, Sendable {
    case socket(String)
    case rooms(in: [String], except: [String], local: Bool)
}

/// One line a backend sent, decoded and checked (proto/PROTOCOL.md §2, §5, §6).
public enum BackendCommand: Hashable, Sendable {
    public struct Hello: Hashable, Sendable {
        public var version: Int64
        public var namespaces: [String]
        public var group: String
        public var authorize: Bool
    }

    public struct Emit: Hashable, Sendable {
        public var namespace: String
        public var event: String
        /// The event's arguments. An emit read from a line without binary data keeps them
        /// printed (see `arguments`) and parses them again only when asked here.
        public var args: [JSONValue] {
            get {
                switch arguments {
                case .values(let args): args
                case .printed(let text): Array(text.value.arrayValue?.dropFirst() ?? [])
                }
            }
            set { arguments = .values(newValue) }
        }
        public var to: [String]
        public var except: [String]
        public var volatile: Bool
        public var local: Bool
        /// Milliseconds to wait for the clients' acknowledgements, when asked for.
        public var ackTimeout: Int64?
        var arguments: Arguments

        /// How the arguments are held: as values, or printed once from the line's parsed tree
        /// as the whole EVENT data `[event, ...args]`, ready for the Socket.IO packet.
        enum Arguments: Sendable {
            case values([JSONValue])
            case printed(JSONText)
        }

        init(
            namespace: String,
            event: String,
            arguments: Arguments,
            to: [String],
            except: [String],
            volatile: Bool,
            local: Bool,
            ackTimeout: Int64?
        ) {
            self.namespace = namespace
            self.event = event
            self.arguments = arguments
            self.to = to
            self.except = except
            self.volatile = volatile
            self.local = local
            self.ackTimeout = ackTimeout
        }

        /// Emits are equal when their arguments are, printed or not.
        public static func == (lhs: Emit, rhs: Emit) -> Bool {
            lhs.namespace == rhs.namespace && lhs.event == rhs.event && lhs.args == rhs.args && lhs.to == rhs.to
                && lhs.except == rhs.except && lhs.volatile == rhs.volatile && lhs.local == rhs.local
                && lhs.ackTimeout == rhs.ackTimeout
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(namespace)
            hasher.combine(event)
            hasher.combine(args)
            hasher.combine(to)
            hasher.combine(except)
            hasher.combine(volatile)
            hasher.combine(local)
            hasher.combine(ackTimeout)
        }
    }

    case hello(Hello)
    case ack(sid: String, namespace: String, ack: Int, args: [JSONValue])
    case emit(Emit)
    case join(SocketSelector, namespace: String, rooms: [String])
    case leave(SocketSelector, namespace: String, rooms: [String])
    case disconnect(SocketSelector, namespace: String, close: Bool)
    case fetch(namespace: String, in: [String], except: [String], local: Bool)
    case count(namespace: String, in: [String], except: [String], local: Bool)
    case rooms(namespace: String, in: [String], except: [String], local: Bool)
    case accept(req: Int, data: JSONValue)
    case reject(req: Int, message: String, data: JSONValue?)
    /// Replaces a local socket's data (Socket.IO's `socket.data`), seen by `fetch` on any node.
    case data(sid: String, namespace: String, data: JSONValue)
    /// An event for the backends of every other node (Socket.IO's `serverSideEmit`).
    case serverEmit(namespace: String, event: String, args: [JSONValue])
    /// Answers a `serverEvent` that carried an `ack` number.
    case serverAck(ack: Int, args: [JSONValue])

    /// The line's `type`, as the protocol spells it.
    public var type: String {
        switch self {
        case .hello: "hello"
        case .ack: "ack"
        case .emit: "emit"
        case .join: "join"
        case .leave: "leave"
        case .disconnect: "disconnect"
        case .fetch: "fetch"
        case .count: "count"
        case .rooms: "rooms"
        case .accept: "accept"
        case .reject: "reject"
        case .data: "data"
        case .serverEmit: "serverEmit"
        case .serverAck: "serverAck"
        }
    }

    /// Event names a Socket.IO client reserves for itself and never lets an app emit.
    static let reservedEvents: Set<String> = [
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    ]
}

/// A decoded line: the command, and the `id` to answer with, if any.
extension BackendCommand {
    /// Whether the command reaches this node's sockets without going through the cluster
    /// first: anything but an emit without ack and a room-wide `join`, `leave` or
    /// `disconnect` for every node.
    var actsOnSocketsDirectly: Bool {
        switch self {
        case .emit(let emit):
            emit.local || emit.ackTimeout != nil
        case .join(let selector, _, _), .leave(let selector, _, _), .disconnect(let selector, _, _):
            if case .rooms(_, _, local: false) = selector { false } else { true }
        case .hello, .ack, .fetch, .count, .rooms, .accept, .reject, .data, .serverEmit, .serverAck:
            true
        }
    }
}

public struct BackendRequest: Hashable, Sendable {
    public var id: JSONValue?
    public var command: BackendCommand
}

/// Why a line could not become a command, with what is needed to answer it (PROTOCOL.md §8).
public struct BackendLineError: Error, Hashable, Sendable {
    public var error: BridgeError
    /// The `id` to reply to, when the line had a usable one.
    public var id: JSONValue?
    /// The offending line's `type`, or its first characters.
    public var line: String
}

extension BackendRequest {
    /// Decodes one NDJSON line. `{"$binary":…}` objects become binary values here.
    ///
    /// An `emit` without binary data, the bulk of a backend's traffic, is read on jansson's
    /// tree: only the members it needs become values, and its arguments are printed once from
    /// the tree for the clients. Every other line is converted to a value first.
    public init(line: ByteBuffer) throws(BackendLineError) {
        let document: JSONDocument
        do {
            document = try JSONDocument(parsing: line)
        } catch {
            throw BackendLineError(error: .badJSON(error.text), id: nil, line: Self.prefix(of: line))
        }
        let members: Fields.Members
        if document.isObject, document["type"] == "emit", !document.containsBinaryObject {
            members = .document(document)
        } else {
            let value: JSONValue
            do {
                value = try document.value(binaryObjects: .decode)
            } catch {
                // Valid JSON whose only fault is a bad `$binary` is a bad message, answered by id.
                guard document.isObject else {
                    throw BackendLineError(error: .badJSON(error.text), id: nil, line: Self.prefix(of: line))
                }
                throw BackendLineError(
                    error: .badMessage("invalid base64 in a $binary object"),
                    id: Self.id(document["id"]),
                    line: document["type"]?.stringValue ?? Self.prefix(of: line)
                )
            }
            guard case .object = value else {
                throw BackendLineError(error: .badJSON("not a JSON object"), id: nil, line: Self.prefix(of: line))
            }
            members = .value(value)
        }
        let id = Self.id(members["id"])
        guard case .string(let type) = members["type"] else {
            throw BackendLineError(error: .unknownType("\(members["type"].map { $0.jsonString() } ?? "")"), id: id, line: Self.prefix(of: line))
        }
        do {
            self.init(id: id, command: try Fields(members: members, type: type).command())
        } catch {
            throw BackendLineError(error: error, id: id, line: type)
        }
    }

    /// The `id` a reply can carry: a string or a number.
    private static func id(_ value: JSONValue?) -> JSONValue? {
        switch value {
        case .string?, .int?, .double?: value
        default: nil
        }
    }

    private static func prefix(of line: ByteBuffer) -> String {
        let bytes = line.readableBytesView.prefix(64)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Typed access to a command's members, throwing the protocol's error codes.
private struct Fields {
    /// Where members are read: a line converted to a value, or an emit's parsed tree.
    enum Members {
        case value(JSONValue)
        case document(JSONDocument)

        subscript(key: String) -> JSONValue? {
            switch self {
            case .value(let value): value[key]
            case .document(let document): document[key]
            }
        }
    }

    let members: Members
    let type: String

    func command() throws(BridgeError) -> BackendCommand {
        switch type {
        case "hello":
            let namespaces = try stringArray("nsps")
            guard !namespaces.isEmpty else { throw .badMessage("\"nsps\" must list at least one namespace") }
            for nsp in namespaces { try checkNamespace(nsp) }
            let group = try optionalString("group") ?? "default"
            guard !group.isEmpty else { throw .badMessage("\"group\" must not be empty") }
            return .hello(.init(
                version: try integer("version"),
                namespaces: namespaces,
                group: group,
                authorize: try optionalBool("authorize") ?? false
            ))
        case "ack":
            return .ack(sid: try string("sid"), namespace: try namespace(), ack: try ackNumber("ack"), args: try array("args"))
        case "emit":
            let event = try eventName()
            var ackTimeout: Int64?
            if let ack = members["ack"], !ack.isNull {
                guard case .object(let options) = ack, let timeout = options["timeout"]?.intValue, timeout >= 1 else {
                    throw .badField("ack", "an object {\"timeout\": ms} with ms >= 1")
                }
                guard members["id"] != nil else { throw .missingField("id", in: "emit with ack") }
                ackTimeout = timeout
            }
            let nsp = try namespace()
            let arguments: BackendCommand.Emit.Arguments
            if case .document(let document) = members {
                guard let printed = document.printedArray(first: "event", elementsOf: "args") else {
                    throw .badField("args", "an array")
                }
                arguments = .printed(printed)
            } else {
                arguments = .values(try optionalArray("args") ?? [])
            }
            return .emit(.init(
                namespace: nsp,
                event: event,
                arguments: arguments,
                to: try optionalStringArray("to") ?? [],
                except: try optionalStringArray("except") ?? [],
                volatile: try optionalBool("volatile") ?? false,
                local: try optionalBool("local") ?? false,
                ackTimeout: ackTimeout
            ))
        case "join":
            return .join(try selector(), namespace: try namespace(), rooms: try stringArray("rooms"))
        case "leave":
            return .leave(try selector(), namespace: try namespace(), rooms: try stringArray("rooms"))
        case "disconnect":
            return .disconnect(try selector(), namespace: try namespace(), close: try optionalBool("close") ?? false)
        case "fetch", "count", "rooms":
            let nsp = try namespace()
            let inRooms = try optionalStringArray("in") ?? []
            let except = try optionalStringArray("except") ?? []
            let local = try optionalBool("local") ?? false
            switch type {
            case "fetch": return .fetch(namespace: nsp, in: inRooms, except: except, local: local)
            case "count": return .count(namespace: nsp, in: inRooms, except: except, local: local)
            default: return .rooms(namespace: nsp, in: inRooms, except: except, local: local)
            }
        case "accept":
            return .accept(req: try ackNumber("req"), data: members["data"] ?? .null)
        case "reject":
            let data = members["data"]
            return .reject(req: try ackNumber("req"), message: try string("message"), data: data?.isNull == true ? nil : data)
        case "data":
            guard let data = members["data"] else { throw .missingField("data", in: type) }
            return .data(sid: try string("sid"), namespace: try namespace(), data: data)
        case "serverEmit":
            let nsp = try optionalString("nsp") ?? "/"
            try checkNamespace(nsp)
            return .serverEmit(namespace: nsp, event: try eventName(), args: try optionalArray("args") ?? [])
        case "serverAck":
            return .serverAck(ack: try ackNumber("ack"), args: try optionalArray("args") ?? [])
        default:
            throw .unknownType(type)
        }
    }

    private func eventName() throws(BridgeError) -> String {
        let event = try string("event")
        guard !event.isEmpty, !BackendCommand.reservedEvents.contains(event) else {
            throw .badMessage("\"\(event)\" is a reserved event name")
        }
        return event
    }

    private func namespace() throws(BridgeError) -> String {
        let nsp = try string("nsp")
        try checkNamespace(nsp)
        return nsp
    }

    private func checkNamespace(_ nsp: String) throws(BridgeError) {
        guard nsp.hasPrefix("/") else { throw .badMessage("namespace \"\(nsp)\" must start with \"/\"") }
    }

    private func selector() throws(BridgeError) -> SocketSelector {
        let sid = members["sid"]
        let inRooms = members["in"]
        switch (sid, inRooms) {
        case (.some, .some):
            throw .badMessage("give either \"sid\" or \"in\", not both")
        case (.none, .none):
            throw .badMessage("give \"sid\" or \"in\"")
        case (.some, .none):
            return .socket(try string("sid"))
        case (.none, .some):
            return .rooms(
                in: try stringArray("in"),
                except: try optionalStringArray("except") ?? [],
                local: try optionalBool("local") ?? false
            )
        }
    }

    private func string(_ key: String) throws(BridgeError) -> String {
        guard let value = members[key] else { throw .missingField(key, in: type) }
        guard case .string(let s) = value else { throw .badField(key, "a string") }
        return s
    }

    private func optionalString(_ key: String) throws(BridgeError) -> String? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .string(let s) = value else { throw .badField(key, "a string") }
        return s
    }

    private func integer(_ key: String) throws(BridgeError) -> Int64 {
        guard let value = members[key] else { throw .missingField(key, in: type) }
        guard let i = value.intValue else { throw .badField(key, "an integer") }
        return i
    }

    private func ackNumber(_ key: String) throws(BridgeError) -> Int {
        guard let value = members[key] else { throw .missingField(key, in: type) }
        guard let i = value.intValue, i >= 0, i <= Int64(Int32.max) * 2 else {
            throw .badMessage("\(key) must be a non-negative integer")
        }
        return Int(i)
    }

    private func optionalBool(_ key: String) throws(BridgeError) -> Bool? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .bool(let b) = value else { throw .badField(key, "true or false") }
        return b
    }

    private func array(_ key: String) throws(BridgeError) -> [JSONValue] {
        guard let value = members[key] else { throw .missingField(key, in: type) }
        guard case .array(let a) = value else { throw .badField(key, "an array") }
        return a
    }

    private func optionalArray(_ key: String) throws(BridgeError) -> [JSONValue]? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .array(let a) = value else { throw .badField(key, "an array") }
        return a
    }

    private func stringArray(_ key: String) throws(BridgeError) -> [String] {
        guard members[key] != nil else { throw .missingField(key, in: type) }
        return try optionalStringArray(key) ?? []
    }

    private func optionalStringArray(_ key: String) throws(BridgeError) -> [String]? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .array(let a) = value else { throw .badField(key, "an array of strings") }
        var result: [String] = []
        result.reserveCapacity(a.count)
        for element in a {
            guard case .string(let s) = element else { throw .badField(key, "an array of strings") }
            result.append(s)
        }
        return result
    }
}
