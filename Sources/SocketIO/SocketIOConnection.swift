import EngineIO
import NIOCore
import OrderedCollections
import SidecastJSON

/// One client's Engine.IO session seen from Socket.IO (`Client` in Node): the attachment
/// decoder and the sockets it opened, one per namespace.
final class SocketIOConnection {
    unowned let server: SocketIOServer
    let session: EngineIOSession
    /// The decoder of a binary packet waiting for its attachments. Between packets a decoder
    /// holds nothing, so text packets get a fresh one and idle connections keep none.
    private var pendingBinaryPacket: PendingBinaryPacket?
    /// The first socket joined, kept inline: most connections join one namespace, and an
    /// array of one costs an idle connection a heap block.
    private var firstSocket: SocketIOSocket?
    /// The sockets of further namespaces, in joining order.
    private var moreSockets: [SocketIOSocket] = []
    /// The connect timeout and the CONNECTs waiting for a decision: they only matter around
    /// a CONNECT, so a connection that joined its namespace keeps one empty reference for them.
    private var connecting: Connecting?
    private var isClosed = false

    /// Built on demand from the session's: it is read when a namespace is joined, not kept.
    var handshake: SocketHandshake { SocketHandshake(session.handshake) }

    init(server: SocketIOServer, session: EngineIOSession) {
        self.server = server
        self.session = session
        // A v3 client is connected to "/" at once (`start`), with no timeout to wait out.
        guard session.version == .v4 else { return }
        // Captured strongly: a weak reference would cost the connection a side table for its
        // whole life; the task is cancelled (and the closure freed) once a namespace is joined
        // or the connection closes.
        let timeout = server.eventLoop.assumeIsolated().scheduleTask(in: server.configuration.connectTimeout) {
            [self] in
            guard self.firstSocket == nil, !self.isClosed else { return }
            self.server.logger.debug("no namespace joined in time, closing", metadata: ["sid": "\(self.session.id)"])
            self.close(reason: .forcedClose)
        }
        connecting = Connecting(timeout: timeout)
    }

    /// Connects an Engine.IO v3 client to the main namespace unasked, as Node's `onconnection`
    /// does for protocol 3: Socket.IO v4-protocol clients send no CONNECT for "/".
    func start() {
        if session.version != .v4 {
            connect(to: "/", auth: [:])
        }
    }

    func receive(text: ByteBuffer) {
        if server.configuration.parser == .msgpack {
            // socket.io-msgpack-parser decodes every message as msgpack; text is none.
            parseFailed(.invalidMessagePack)
            return
        }
        do {
            if let pending = pendingBinaryPacket {
                // Throws: a text packet cannot interrupt the attachments of a binary one.
                _ = try pending.decoder.decode(text: text)
            }
            var decoder = SocketIOPacketDecoder(maxAttachments: server.configuration.maxAttachments)
            switch try decoder.decodeKeepingEventData(text: text) {
            case .packet(let packet)?:
                route(packet)
            case .event(var namespace, let id, let data, let text)?:
                if session.version != .v4, let mark = namespace.firstIndex(of: "?") {
                    // As `normalizedV4Protocol` reads a v4-protocol packet's namespace.
                    namespace = String(namespace[..<mark])
                }
                server.logger.trace("event in", metadata: ["sid": "\(session.id)", "nsp": "\(namespace)", "id": "\(id.map(String.init) ?? "-")"])
                if let socket = socket(in: namespace) {
                    socket.receivedEvent(data: data, text: text, id: id)
                } else {
                    server.logger.debug("no socket for namespace", metadata: ["nsp": "\(namespace)"])
                }
            case nil:
                pendingBinaryPacket = PendingBinaryPacket(decoder)
            }
        } catch {
            parseFailed(error)
        }
    }

    func receive(binary: ByteBuffer) {
        if server.configuration.parser == .msgpack {
            do {
                route(try MessagePackPacketCodec.decode(binary))
            } catch {
                parseFailed(error)
            }
            return
        }
        do {
            guard let pending = pendingBinaryPacket else {
                var decoder = SocketIOPacketDecoder(maxAttachments: server.configuration.maxAttachments)
                _ = try decoder.decode(binary: binary)
                return
            }
            let packet = try pending.decoder.decode(binary: binary)
            if let packet {
                pendingBinaryPacket = nil
                route(packet)
            }
        } catch {
            pendingBinaryPacket = nil
            parseFailed(error)
        }
    }

    /// Namespaces whose CONNECT waits for an authorization decision.
    var pendingConnectCount: Int { connecting?.pending.count ?? 0 }

    /// One socket per namespace joined, in joining order.
    var sockets: [SocketIOSocket] {
        guard let firstSocket else { return [] }
        return [firstSocket] + moreSockets
    }

    private func socket(in namespace: String) -> SocketIOSocket? {
        if let firstSocket, firstSocket.namespace.name == namespace { return firstSocket }
        return moreSockets.first { $0.namespace.name == namespace }
    }

    private func parseFailed(_ error: SocketIOParseError) {
        server.logger.info("closing client after a malformed packet", metadata: [
            "sid": "\(session.id)", "error": "\(error)",
        ])
        close(reason: .parseError)
    }

    private func route(_ received: SocketIOPacket) {
        let packet = session.version == .v4 ? received : Self.normalizedV4Protocol(received)
        server.logger.trace("packet in", metadata: ["sid": "\(session.id)", "packet": "\(packet)"])
        if packet.type == .connect {
            connect(to: packet.namespace, auth: packet.data)
        } else if let socket = socket(in: packet.namespace) {
            socket.received(packet)
        } else {
            server.logger.debug("no socket for namespace", metadata: ["nsp": "\(packet.namespace)"])
        }
    }

    /// A packet of the Socket.IO v4 protocol (an Engine.IO v3 client) in the form of v5. Its
    /// namespace may carry a query, which for a CONNECT is the auth, as Node's `Client.ondecoded`
    /// takes it with `url.parse(packet.nsp, true)` (a repeated name keeps its last value here,
    /// where Node makes an array); a CONNECT without one has the auth `{}`.
    private static func normalizedV4Protocol(_ packet: SocketIOPacket) -> SocketIOPacket {
        var packet = packet
        var auth: OrderedDictionary<String, JSONValue> = [:]
        if let mark = packet.namespace.firstIndex(of: "?") {
            let query = EngineIORequestURI.parseQuery(packet.namespace[packet.namespace.index(after: mark)...])
            for (name, value) in query.sorted(by: { $0.key < $1.key }) {
                auth[name] = .string(value)
            }
            packet.namespace = String(packet.namespace[..<mark])
        }
        if packet.type == .connect {
            packet.data = .object(auth)
        }
        return packet
    }

    private func connect(to name: String, auth: JSONValue?) {
        guard socket(in: name) == nil, connecting?.pending.contains(where: { $0.namespace == name }) != true else { return }
        guard let sink = server.sink, sink.namespaceExists(name) else {
            // An object even for a v3 client: Node's `Client.connect` has no protocol branch.
            sendConnectError(namespace: name, message: "Invalid namespace", data: nil, alwaysObject: true)
            return
        }
        let limit = server.configuration.maxPendingConnects
        if let connecting, connecting.pending.count >= limit {
            server.metrics.pendingConnectsLimit.increment()
            // Debug, not info: the client stays connected and could repeat this at will.
            server.logger.debug("refusing a CONNECT: the client already waits on too many namespaces", metadata: [
                "sid": "\(session.id)", "nsp": "\(name)", "limit": "\(limit)",
            ])
            sendConnectError(namespace: name, message: "too many pending connects", data: nil)
            return
        }
        if connecting == nil {
            connecting = Connecting(timeout: nil)
        }
        guard let recovery = server.recovery, let settings = server.configuration.recovery, session.version == .v4,
              let claim = RecoveryClaim(auth)
        else {
            let socketID = makeSocketID()
            connecting?.pending.append(PendingConnect(namespace: name, socketID: socketID))
            authorize(namespace: name, auth: auth, socketID: socketID, claim: nil)
            return
        }
        // As Node's `_createSocket`: a CONNECT whose auth carries a string `pid` and `offset`
        // asks for its session back. The namespace waits without an id until the store answers.
        connecting?.pending.append(PendingConnect(namespace: name, socketID: nil))
        if settings.skipAuthorization {
            recovery.restore(pid: claim.pid, offset: claim.offset, namespace: name) { [self] restored in
                guard let index = pendingIndex(name, socketID: nil) else {
                    if let restored { putBack(restored) }
                    return
                }
                guard let restored else {
                    let socketID = makeSocketID()
                    connecting?.pending[index].socketID = socketID
                    return authorize(namespace: name, auth: auth, socketID: socketID, claim: nil)
                }
                finishPending(at: index)
                open(restored, auth: auth, acceptedData: nil)
            }
        } else {
            recovery.lookUp(pid: claim.pid, offset: claim.offset, namespace: name) { [self] sid in
                guard let index = pendingIndex(name, socketID: nil) else { return }
                let socketID = sid ?? makeSocketID()
                connecting?.pending[index].socketID = socketID
                authorize(namespace: name, auth: auth, socketID: socketID, claim: sid == nil ? nil : claim)
            }
        }
    }

    /// A session restored for a connection that closed before it could take it: kept again
    /// for the client's next try, and routed nowhere meanwhile.
    private func putBack(_ restored: RestoredSession) {
        server.recovery?.restoredSocketLeft(sid: restored.session.sid)
        server.recovery?.persist(restored.session)
    }

    private func makeSocketID() -> String {
        RandomID.make(length: RandomID.socketIDLength, shard: server.configuration.shard)
    }

    /// Where the CONNECT for `namespace` waits, if it still does with this id: a connection
    /// that closed meanwhile has none.
    private func pendingIndex(_ namespace: String, socketID: String?) -> Int? {
        guard !isClosed else { return nil }
        return connecting?.pending.firstIndex { $0.namespace == namespace && $0.socketID == socketID }
    }

    private func finishPending(at index: Int) {
        connecting?.pending.remove(at: index)
        if connecting?.isIdle == true {
            connecting = nil
        }
    }

    /// Asks the sink whether the client may join; `claim` is set when the client recovers the
    /// socket `socketID`, which it then gets back once accepted.
    private func authorize(namespace name: String, auth: JSONValue?, socketID: String, claim: RecoveryClaim?) {
        guard let sink = server.sink else {
            if let index = pendingIndex(name, socketID: socketID) { finishPending(at: index) }
            return sendConnectError(namespace: name, message: "Invalid namespace", data: nil, alwaysObject: true)
        }
        let request = ConnectRequest(
            socketID: socketID, namespace: name, auth: auth, handshake: handshake, recovering: claim != nil
        )
        // Not weak, like the connect timeout: the sink holds the callback only until it decides.
        sink.authorize(request) { [self] decision in
            guard let index = pendingIndex(name, socketID: socketID) else { return }
            switch decision {
            case .accept(let data):
                guard let claim, let recovery = server.recovery else {
                    finishPending(at: index)
                    return open(socketID: socketID, namespace: name, auth: auth, data: data ?? .null)
                }
                // Restored only now, in the loop turn that inserts the socket: what was sent
                // while the backend decided is among the missed packets.
                recovery.restore(pid: claim.pid, offset: claim.offset, namespace: name) { [self] restored in
                    guard let index = pendingIndex(name, socketID: socketID) else {
                        if let restored { putBack(restored) }
                        return
                    }
                    finishPending(at: index)
                    if let restored {
                        // A `null` from the backend sets nothing: the session's data stays.
                        let accepted: JSONValue? = if let data, !data.isNull { data } else { nil }
                        open(restored, auth: auth, acceptedData: accepted)
                    } else {
                        // Expired or overtaken while the backend decided: a fresh socket.
                        open(socketID: makeSocketID(), namespace: name, auth: auth, data: data ?? .null)
                    }
                }
            case .reject(let message, let data):
                finishPending(at: index)
                sendConnectError(namespace: name, message: message, data: data)
            }
        }
    }

    private func open(socketID: String, namespace name: String, auth: JSONValue?, data: JSONValue) {
        let pid = server.configuration.recovery != nil && session.version == .v4 ? makeSocketID() : nil
        let socket = insert(SocketIOSocket(
            id: socketID, namespace: server.namespace(named: name), connection: self, auth: auth, data: data, pid: pid
        ))
        socket.join(socketID)
        sendConnect(socket)
    }

    /// Opens a recovered socket as Node's `Socket` constructor does: its rooms joined again,
    /// the packets it missed sent in order ahead of the CONNECT (the client delivers them
    /// before its `connect` event), and every packet sent after the store answered reaching it
    /// live. A backend's `accept` data wins over the session's, as a middleware's does in Node.
    ///
    /// Unlike Node, which buffers without bound, the missed packets must fit in
    /// `maxBufferedBytes`: they are all queued in this loop turn, and more would disconnect the
    /// client as too slow, again at each try. A client that missed more connects fresh.
    private func open(_ restored: RestoredSession, auth: JSONValue?, acceptedData: JSONValue?) {
        let persisted = restored.session
        let namespace = server.namespace(named: persisted.namespace)
        guard namespace.sockets[persisted.sid] == nil else {
            // Cannot happen while the store hands a session out once; a fresh socket is safe.
            server.recovery?.restoredSocketLeft(sid: persisted.sid)
            return open(socketID: makeSocketID(), namespace: persisted.namespace, auth: auth, data: acceptedData ?? .null)
        }
        let missed = restored.missedPackets.map { server.encodeMessages($0) }
        let bytes = missed.reduce(0) { total, messages in messages.reduce(total) { $0 + $1.byteCount } }
        guard bytes <= server.configuration.maxBufferedBytes else {
            server.metrics.replayTooLarge.increment()
            server.logger.info("not recovering a client: it missed more than the client buffer holds", metadata: [
                "socket": "\(persisted.sid)", "missed": "\(missed.count)", "bytes": "\(bytes)",
                "limit": "\(server.configuration.maxBufferedBytes)",
            ])
            server.recovery?.restoredSocketLeft(sid: persisted.sid)
            return open(socketID: makeSocketID(), namespace: persisted.namespace, auth: auth, data: acceptedData ?? .null)
        }
        let socket = insert(SocketIOSocket(
            id: persisted.sid, namespace: namespace, connection: self, auth: auth,
            data: acceptedData ?? persisted.data, pid: persisted.pid, recovered: true
        ))
        for room in persisted.rooms { socket.join(room) }
        for messages in missed {
            session.send(messages)
            server.metrics.sent(messages, recipients: 1)
        }
        sendConnect(socket)
    }

    private func insert(_ socket: SocketIOSocket) -> SocketIOSocket {
        connecting?.timeout?.cancel()
        connecting?.timeout = nil
        // Its CONNECT was taken off `pending` before: with no other waiting, the connection
        // keeps nothing of its connecting (it kept 0.1 KiB for good when left here).
        if connecting?.isIdle == true {
            connecting = nil
        }
        if firstSocket == nil {
            firstSocket = socket
        } else {
            moreSockets.append(socket)
        }
        socket.namespace.insert(socket)
        return socket
    }

    private func sendConnect(_ socket: SocketIOSocket) {
        let name = socket.namespace.name
        var reply: JSONValue?
        if session.version == .v4 {
            // Node's `{sid, pid}`: `pid` is left out when recovery is off (undefined there).
            var fields: OrderedDictionary<String, JSONValue> = ["sid": .string(socket.id)]
            if let pid = socket.pid { fields["pid"] = .string(pid) }
            reply = .object(fields)
        }
        // Socket.IO v4 protocol (a v3 client): the CONNECT carries no data.
        socket.send(SocketIOPacket(type: .connect, namespace: name, data: reply))
        server.logger.debug("socket connected", metadata: [
            "nsp": "\(name)", "socket": "\(socket.id)", "recovered": "\(socket.recovered)",
        ])
        server.sink?.socketDidConnect(socket)
    }

    private func sendConnectError(namespace: String, message: String, data: JSONValue?, alwaysObject: Bool = false) {
        var payload: JSONValue = ["message": .string(message)]
        if session.version != .v4 && !alwaysObject {
            // Socket.IO v4 protocol: the ERROR packet carries `err.data || err.message`.
            payload = data.flatMap { $0.isNull ? nil : $0 } ?? .string(message)
        } else if let data, !data.isNull, case .object(var members) = payload {
            members["data"] = data
            payload = .object(members)
        }
        let messages = server.encodeMessages(SocketIOPacket(type: .connectError, namespace: namespace, data: payload))
        session.send(messages)
        server.metrics.sent(messages, recipients: 1)
    }

    /// Takes one socket out of its namespace; the session stays open even when it was the last.
    func remove(_ socket: SocketIOSocket, reason: DisconnectReason) {
        if firstSocket === socket {
            // The next one moves inline, so `firstSocket == nil` still means "no socket".
            firstSocket = moreSockets.isEmpty ? nil : moreSockets.removeFirst()
        } else if let index = moreSockets.firstIndex(where: { $0 === socket }) {
            moreSockets.remove(at: index)
        } else {
            return
        }
        if moreSockets.isEmpty {
            moreSockets = []
        }
        let persisted = RecoveryConfiguration.isRecoverable(reason) ? socket.sessionToPersist : nil
        socket.closed()
        socket.namespace.removeSocket(socket)
        if socket.recovered { server.recovery?.restoredSocketLeft(sid: socket.id) }
        if let persisted { server.recovery?.persist(persisted) }
        server.logger.debug("socket disconnected", metadata: [
            "nsp": "\(socket.namespace.name)", "socket": "\(socket.id)", "reason": "\(reason.rawValue)",
        ])
        server.sink?.socket(socket, didDisconnectWith: reason)
    }

    /// Tells every socket the server disconnects it, then closes the transport once what is
    /// queued is written: the client learns why when (if) it catches up.
    func disconnectSlowClient() {
        guard !isClosed else { return }
        for socket in sockets {
            let messages = server.encodeMessages(SocketIOPacket(type: .disconnect, namespace: socket.namespace.name))
            session.send(messages)
            server.metrics.sent(messages, recipients: 1)
        }
        close(reason: .forcedClose)
    }

    /// Closes the Engine.IO session; `sessionClosed` follows from the transport.
    func close(reason: DisconnectReason) {
        guard !isClosed else { return }
        closeSockets(reason: reason)
        session.close(reason: reason == .serverShuttingDown ? .serverShuttingDown : .forcedClose)
    }

    /// The transport is gone: every socket leaves with the transport's reason.
    func sessionClosed(reason: DisconnectReason) {
        closeSockets(reason: reason)
    }

    private func closeSockets(reason: DisconnectReason) {
        guard !isClosed else { return }
        isClosed = true
        connecting?.timeout?.cancel()
        let abandoned = connecting?.pending ?? []
        connecting = nil
        for pending in abandoned {
            guard let socketID = pending.socketID else { continue }
            server.sink?.authorizationAbandoned(socketID: socketID, namespace: pending.namespace)
        }
        for socket in sockets {
            remove(socket, reason: reason)
        }
    }
}

/// The decoder of a binary packet between its text part and its last attachment.
private final class PendingBinaryPacket {
    var decoder: SocketIOPacketDecoder

    init(_ decoder: SocketIOPacketDecoder) {
        self.decoder = decoder
    }
}

/// What a connection keeps between a CONNECT and its decision, and until it first joins one.
private final class Connecting {
    /// Closes the connection if it joins no namespace in time; cancelled once it joins one.
    var timeout: Scheduled<Void>?
    /// Namespaces whose CONNECT waits for a decision, with the id promised.
    var pending: [PendingConnect] = []

    init(timeout: Scheduled<Void>?) {
        self.timeout = timeout
    }

    var isIdle: Bool { timeout == nil && pending.isEmpty }
}

/// A CONNECT waiting for the session store or for an authorization decision.
private struct PendingConnect {
    var namespace: String
    /// The id the socket will have; nil while the session store is asked whether the client
    /// gets its old one back.
    var socketID: String?
}

/// What a recovering client's CONNECT carries in its auth: Node's client sends its last
/// `pid` and the offset of the last event it got, both strings (`Socket._sendConnectPacket`).
private struct RecoveryClaim {
    var pid: String
    var offset: String

    init?(_ auth: JSONValue?) {
        guard case .object(let fields)? = auth, case .string(let pid)? = fields["pid"],
              case .string(let offset)? = fields["offset"]
        else { return nil }
        self.pid = pid
        self.offset = offset
    }
}
