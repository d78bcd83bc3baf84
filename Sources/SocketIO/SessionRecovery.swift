import NIOCore
import SidecastJSON

/// Connection state recovery, as Node's `connectionStateRecovery` option: a client whose
/// connection dropped comes back within `window` with the same socket id, rooms and data, and
/// receives the packets it missed.
public struct RecoveryConfiguration: Sendable, Hashable {
    /// How long a dropped socket's session and the packets it may miss are kept
    /// (`maxDisconnectionDuration`).
    public var window: TimeAmount
    /// A recovered socket is not sent to the authorizing backend again (`skipMiddlewares`).
    public var skipAuthorization: Bool

    public init(window: TimeAmount, skipAuthorization: Bool = false) {
        self.window = window
        self.skipAuthorization = skipAuthorization
    }

    /// Why a socket left, when its client may come back and recover: the transport went away
    /// under it or the server closed it, never because either side asked it to leave
    /// (`RECOVERABLE_DISCONNECT_REASONS` in Node's socket.ts).
    static func isRecoverable(_ reason: DisconnectReason) -> Bool {
        switch reason {
        case .transportError, .transportClose, .forcedClose, .pingTimeout, .serverShuttingDown: true
        case .parseError, .clientNamespaceDisconnect, .serverNamespaceDisconnect: false
        }
    }

    /// Whether a broadcast's packet is kept for replay and gets an offset: an event that
    /// waits for no acknowledgement and is not volatile, as Node's `SessionAwareAdapter`
    /// decides (an ack callback cannot be replayed, a volatile packet may be lost anyway).
    public static func keeps(_ packet: SocketIOPacket, options: BroadcastOptions) -> Bool {
        packet.type == .event && packet.id == nil && !options.volatile
    }

    /// `packet` with `offset` appended as its last argument, where Node puts it: the client
    /// reads the last argument of every event as the offset it has got to.
    public static func appendingOffset(_ offset: String, to packet: SocketIOPacket) -> SocketIOPacket {
        var packet = packet
        if let printed = packet.printedData {
            packet = SocketIOPacket(
                type: packet.type, namespace: packet.namespace, id: packet.id,
                printedData: printed.appendingToArray(.string(offset))
            )
        } else if case .array(var elements)? = packet.data {
            elements.append(.string(offset))
            packet.data = .array(elements)
        }
        return packet
    }
}

/// What a socket leaves behind when its client may recover it: Node's `SessionToPersist`.
public struct PersistedSession: Sendable, Hashable {
    /// The private session id the client got beside its sid and sends back to recover.
    public var pid: String
    public var sid: String
    public var namespace: String
    /// Every room the socket was in, its own id first when it was in that room.
    public var rooms: [String]
    public var data: JSONValue

    public init(pid: String, sid: String, namespace: String, rooms: [String], data: JSONValue) {
        self.pid = pid
        self.sid = sid
        self.namespace = namespace
        self.rooms = rooms
        self.data = data
    }

    /// Whether a packet broadcast with `options` was for this socket: to no room in particular
    /// or to one of its rooms, and to none of them excluded (`shouldIncludePacket` in Node).
    public func wants(_ options: BroadcastOptions) -> Bool {
        guard options.namespace == namespace else { return false }
        let included = options.rooms.isEmpty || rooms.contains { options.rooms.contains($0) }
        return included && !rooms.contains { options.except.contains($0) }
    }
}

/// A session taken back by its client, with the packets it missed in the order they were
/// sent, each already carrying its offset.
public struct RestoredSession: Sendable {
    public var session: PersistedSession
    public var missedPackets: [SocketIOPacket]

    public init(session: PersistedSession, missedPackets: [SocketIOPacket]) {
        self.session = session
        self.missedPackets = missedPackets
    }
}

/// How a shard's Socket.IO server reaches the node's session store. Called on the server's
/// loop; completions run there too.
///
/// The store decides the order of everything it answers against the broadcasts it keeps: the
/// missed packets of a restore are those sent before it, and any packet sent after it reaches
/// the restored socket live. The server inserts the socket in the same loop turn as the
/// completion, so no packet falls in between.
public protocol SessionRecovery: AnyObject {
    /// Keeps a dropped socket's session for the window.
    func persist(_ session: PersistedSession)
    /// The sid the session `pid` would get back, if `offset` can still be replayed; leaves
    /// the session in place (asked before an authorization, which needs the sid).
    func lookUp(pid: String, offset: String, namespace: String, completion: @escaping (String?) -> Void)
    /// Takes the session `pid` and the packets it missed since `offset`; nil when the session
    /// is unknown or expired, or the offset is no longer kept.
    func restore(pid: String, offset: String, namespace: String, completion: @escaping (RestoredSession?) -> Void)
    /// A socket restored by this server left, for whatever reason, or a session restored for
    /// it did not become a socket here after all: its sid is routed by its own shard again.
    func restoredSocketLeft(sid: String)
}
