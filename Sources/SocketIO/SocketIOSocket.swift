import CPrefetch
import EngineIO
import NIOCore
import SidecastJSON

/// One client's membership of one namespace (`socket` in Node). Confined to the server's loop.
///
/// Its `id` is distinct from the Engine.IO session id: a client connected to two namespaces has
/// two sockets over one session.
public final class SocketIOSocket {
    /// Why an acknowledgement the server asked for never came.
    public enum AckFailure: Error, Sendable {
        case timeout
        case disconnected
    }

    public let id: String
    public let namespace: Namespace
    /// The CONNECT packet's payload as the client sent it, `nil` when absent.
    public var auth: JSONValue? { extras?.auth }
    /// Free-form data a backend attached (Socket.IO's `socket.data`).
    public var data: JSONValue {
        get { extras?.data ?? .null }
        set {
            guard extras != nil || !newValue.isNull else { return }
            makeExtras().data = newValue
        }
    }
    /// The rooms joined, its own-id room included.
    public var rooms: Set<String> {
        isInOwnRoom ? joinedRooms.union(CollectionOfOne(id)) : joinedRooms
    }
    /// The rooms joined besides its own-id room, which is a flag: every socket is in it.
    private var joinedRooms: Set<String> = []
    /// The private session id its client recovers it with, when recovery is on.
    public let pid: String?

    /// Strong: a socket may outlive its client's connection (the bridge keeps it queued for a
    /// backend in grace, and reads its handshake from it later). The cycle with the
    /// connection's `sockets` ends when the connection closes and lets its sockets go.
    let connection: SocketIOConnection
    /// The Engine.IO session this socket rides on: its connection's, kept here too because a
    /// broadcast asks every recipient for it, and the way through the connection reads one
    /// more object per delivery, a cache miss when the room is large.
    public let session: EngineIOSession
    /// Has the CPU load the session's object while other work runs.
    func prefetchSession() {
        sidecast_prefetch(Unmanaged.passUnretained(session).toOpaque())
    }

    /// What most sockets never use (auth, data, acks), behind one reference created on first
    /// use: an idle socket keeps one pointer instead of room for all of them.
    private var extras: Extras?

    // The flags last, together: stored properties are laid out in the order written, and a
    // flag between two pointers takes 8 bytes. So the socket takes 91 bytes, a 112-byte block
    // of malloc's (104 usable), rather than 104 bytes and a 128-byte block. Without `session`
    // it took 83, a 96-byte block: the pointer costs 16 bytes a socket.
    /// Whether the socket is in the room named by its id, as it is from connect until it
    /// leaves that room explicitly.
    private(set) var isInOwnRoom = false
    public private(set) var isConnected = true
    /// Whether the socket came back from a dropped connection with its id, rooms and data
    /// (Node's `socket.recovered`).
    public let recovered: Bool

    private final class Extras {
        var auth: JSONValue?
        var data: JSONValue = .null
        /// Acks the client asked for and nobody answered yet, oldest first: an answer is sent
        /// at most once. At most `maxAcksOwedToClient`; usually answered in order, so an
        /// answer's id is found near the front.
        var ackIDsOwedToClient: [Int] = []
        /// Acks we asked the client for, by packet id.
        var awaitedAcks: [Int: AwaitedAck] = [:]
    }

    private struct AwaitedAck {
        var callback: (Result<[JSONValue], AckFailure>) -> Void
        var timeout: Scheduled<Void>?
    }

    init(
        id: String,
        namespace: Namespace,
        connection: SocketIOConnection,
        auth: JSONValue?,
        data: JSONValue,
        pid: String? = nil,
        recovered: Bool = false
    ) {
        self.id = id
        self.namespace = namespace
        self.connection = connection
        self.session = connection.session
        self.pid = pid
        self.recovered = recovered
        if auth != nil {
            makeExtras().auth = auth
        }
        self.data = data
    }

    private func makeExtras() -> Extras {
        if let extras { return extras }
        let extras = Extras()
        self.extras = extras
        return extras
    }

    /// Built on demand from the Engine.IO session's, which every connection keeps anyway.
    public var handshake: SocketHandshake { connection.handshake }

    /// Stops reading from this socket's client connection (every namespace it joined) until
    /// `resumeReading()`: how a slow consumer of its events pushes back on the client.
    public func pauseReading() {
        session.pauseReading()
    }

    public func resumeReading() {
        session.resumeReading()
    }

    /// Sends an event to this socket alone.
    public func emit(_ event: String, _ args: [JSONValue]) {
        send(SocketIOPacket(type: .event, namespace: namespace.name, data: .array([.string(event)] + args)))
    }

    /// Sends an event and waits for the client's acknowledgement for at most `timeout`.
    public func emit(
        _ event: String,
        _ args: [JSONValue],
        timeout: TimeAmount,
        callback: @escaping (Result<[JSONValue], AckFailure>) -> Void
    ) {
        guard isConnected else {
            callback(.failure(.disconnected))
            return
        }
        let ackID = namespace.makeAckID()
        let timer = namespace.server.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self else { return }
            self.resolveAck(ackID, .failure(.timeout))
        }
        makeExtras().awaitedAcks[ackID] = AwaitedAck(callback: callback, timeout: timer)
        send(SocketIOPacket(type: .event, namespace: namespace.name, id: ackID, data: .array([.string(event)] + args)))
    }

    /// Answers an acknowledgement the client asked for. Returns `false` when no such ack is owed
    /// (unknown id, or already answered): the client never sees a second answer.
    @discardableResult
    public func sendAck(_ ackID: Int, _ args: [JSONValue]) -> Bool {
        guard isConnected, let extras, let index = extras.ackIDsOwedToClient.firstIndex(of: ackID) else { return false }
        extras.ackIDsOwedToClient.remove(at: index)
        send(SocketIOPacket(type: .ack, namespace: namespace.name, id: ackID, data: .array(args)))
        return true
    }

    /// Acks the client waits for and nobody answered yet.
    var acksOwedCount: Int { extras?.ackIDsOwedToClient.count ?? 0 }

    /// Records that the client waits for `ackID`, forgetting the oldest owed ack past the limit.
    private func owe(_ ackID: Int) {
        let extras = makeExtras()
        guard !extras.ackIDsOwedToClient.contains(ackID) else { return }
        let server = namespace.server
        if extras.ackIDsOwedToClient.count >= server.configuration.maxAcksOwedToClient, !extras.ackIDsOwedToClient.isEmpty {
            let forgotten = extras.ackIDsOwedToClient.removeFirst()
            server.metrics.acksOwedLimit.increment()
            server.logger.debug("client waits for too many acks; forgetting the oldest", metadata: [
                "sid": "\(session.id)", "socket": "\(id)", "ack": "\(forgotten)",
                "limit": "\(server.configuration.maxAcksOwedToClient)",
            ])
        }
        extras.ackIDsOwedToClient.append(ackID)
    }

    /// Every room, its own id first when it is in that room, the others sorted: the order
    /// `fetch` shows and a persisted session keeps.
    public var roomsOwnFirst: [String] {
        let others = joinedRooms.sorted()
        return isInOwnRoom ? [id] + others : others
    }

    /// What the session store keeps of this socket when its client may come back for it.
    var sessionToPersist: PersistedSession? {
        pid.map { PersistedSession(pid: $0, sid: id, namespace: namespace.name, rooms: roomsOwnFirst, data: data) }
    }

    public func join(_ room: String) {
        guard isConnected else { return }
        if room == id {
            guard !isInOwnRoom else { return }
            isInOwnRoom = true
            namespace.ownRoomChanged(of: self)
        } else if joinedRooms.insert(room).inserted {
            namespace.add(self, to: room)
        }
    }

    public func leave(_ room: String) {
        if room == id {
            guard isInOwnRoom else { return }
            isInOwnRoom = false
            namespace.ownRoomChanged(of: self)
        } else if joinedRooms.remove(room) != nil {
            namespace.remove(self, from: room)
        }
    }

    /// Server-side disconnect. With `close`, the client's whole connection goes too (every namespace).
    public func disconnect(close: Bool = false) {
        guard isConnected else { return }
        if close {
            // As `socket.disconnect(true)` in Node: no DISCONNECT packet, the transport closes;
            // this socket leaves as asked, the connection's other sockets with "forced close".
            connection.remove(self, reason: .serverNamespaceDisconnect)
            connection.close(reason: .forcedClose)
        } else {
            send(SocketIOPacket(type: .disconnect, namespace: namespace.name))
            connection.remove(self, reason: .serverNamespaceDisconnect)
        }
    }

    func send(_ packet: SocketIOPacket) {
        guard isConnected else { return }
        let server = namespace.server
        let messages = server.encodeMessages(packet)
        if server.deliver(messages, to: self, volatile: false) {
            server.metrics.sent(messages, recipients: 1)
        }
    }

    /// Registers that a broadcast asked this socket for an ack with the namespace-wide `ackID`.
    func awaitAck(_ ackID: Int, callback: @escaping (Result<[JSONValue], AckFailure>) -> Void) {
        makeExtras().awaitedAcks[ackID] = AwaitedAck(callback: callback, timeout: nil)
    }

    func cancelAwaitedAck(_ ackID: Int) {
        extras?.awaitedAcks.removeValue(forKey: ackID)?.timeout?.cancel()
    }

    func received(_ packet: SocketIOPacket) {
        switch packet.type {
        case .event, .binaryEvent:
            guard case .array(let payload) = packet.data, let name = SocketIOEvent.name(of: payload.first) else { return }
            received(SocketIOEvent(name: name, args: Array(payload.dropFirst()), ackID: packet.id))
        case .ack, .binaryAck:
            guard let ackID = packet.id else { return }
            resolveAck(ackID, .success(packet.data?.arrayValue ?? []))
        case .disconnect:
            connection.remove(self, reason: .clientNamespaceDisconnect)
        case .connect, .connectError:
            break
        }
    }

    /// A plain EVENT, its data still parsed (the decoder checked it holds a name first).
    func receivedEvent(data: JSONDocument, text: SocketIOEvent.Text?, id: Int?) {
        guard let name = SocketIOEvent.name(of: data.element(0)) else { return }
        received(SocketIOEvent(name: name, data: data, text: text, ackID: id))
    }

    private func received(_ event: SocketIOEvent) {
        if let ackID = event.ackID { owe(ackID) }
        namespace.server.sink?.socket(self, didReceive: event)
    }

    private func resolveAck(_ ackID: Int, _ result: Result<[JSONValue], AckFailure>) {
        guard let awaited = extras?.awaitedAcks.removeValue(forKey: ackID) else { return }
        awaited.timeout?.cancel()
        awaited.callback(result)
    }

    /// Leaves every room and fails pending acks; called once when the socket goes away.
    func closed() {
        guard isConnected else { return }
        isConnected = false
        leave(id)
        for room in joinedRooms { namespace.remove(self, from: room) }
        joinedRooms = []
        guard let extras else { return }
        extras.ackIDsOwedToClient.removeAll()
        let awaited = extras.awaitedAcks
        extras.awaitedAcks.removeAll()
        for (_, ack) in awaited {
            ack.timeout?.cancel()
            ack.callback(.failure(.disconnected))
        }
    }
}
