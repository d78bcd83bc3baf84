import EngineIO
import NIOCore
import SidecastJSON

/// One client's Engine.IO session seen from Socket.IO (`Client` in Node): the attachment
/// decoder and the sockets it opened, one per namespace.
final class SocketIOConnection {
    unowned let server: SocketIOServer
    let session: EngineIOSession
    private var decoder: SocketIOPacketDecoder
    private(set) var sockets: [String: SocketIOSocket] = [:]
    /// Namespaces whose CONNECT waits for an authorization decision, with the id promised.
    private var pendingConnects: [String: String] = [:]
    private var connectTimeout: Scheduled<Void>?
    private var isClosed = false

    /// Built on demand from the session's: it is read when a namespace is joined, not kept.
    var handshake: SocketHandshake { SocketHandshake(session.handshake) }

    init(server: SocketIOServer, session: EngineIOSession) {
        self.server = server
        self.session = session
        self.decoder = SocketIOPacketDecoder(maxAttachments: server.configuration.maxAttachments)
        connectTimeout = server.eventLoop.assumeIsolated().scheduleTask(in: server.configuration.connectTimeout) {
            [weak self] in
            guard let self, self.sockets.isEmpty else { return }
            self.server.logger.debug("no namespace joined in time, closing", metadata: ["sid": "\(self.session.id)"])
            self.close(reason: .forcedClose)
        }
    }

    func receive(text: String) {
        do {
            if let packet = try decoder.decode(text: text) { route(packet) }
        } catch {
            parseFailed(error)
        }
    }

    func receive(binary: ByteBuffer) {
        do {
            if let packet = try decoder.decode(binary: binary) { route(packet) }
        } catch {
            parseFailed(error)
        }
    }

    private func parseFailed(_ error: SocketIOParseError) {
        server.logger.info("closing client after a malformed packet", metadata: [
            "sid": "\(session.id)", "error": "\(error)",
        ])
        close(reason: .parseError)
    }

    private func route(_ packet: SocketIOPacket) {
        server.logger.trace("packet in", metadata: ["sid": "\(session.id)", "packet": "\(packet)"])
        if packet.type == .connect {
            connect(to: packet.namespace, auth: packet.data)
        } else if let socket = sockets[packet.namespace] {
            socket.received(packet)
        } else {
            server.logger.debug("no socket for namespace", metadata: ["nsp": "\(packet.namespace)"])
        }
    }

    private func connect(to name: String, auth: JSONValue?) {
        guard sockets[name] == nil, pendingConnects[name] == nil else { return }
        guard let sink = server.sink, sink.namespaceExists(name) else {
            sendConnectError(namespace: name, message: "Invalid namespace", data: nil)
            return
        }
        let socketID = SocketIOServer.makeSocketID()
        pendingConnects[name] = socketID
        let request = ConnectRequest(socketID: socketID, namespace: name, auth: auth, handshake: handshake)
        sink.authorize(request) { [weak self] decision in
            guard let self, !self.isClosed, self.pendingConnects.removeValue(forKey: name) == socketID else { return }
            switch decision {
            case .accept(let data):
                self.open(socketID: socketID, namespace: name, auth: auth, data: data ?? .null)
            case .reject(let message, let data):
                self.sendConnectError(namespace: name, message: message, data: data)
            }
        }
    }

    private func open(socketID: String, namespace name: String, auth: JSONValue?, data: JSONValue) {
        connectTimeout?.cancel()
        connectTimeout = nil
        let namespace = server.namespace(named: name)
        let socket = SocketIOSocket(id: socketID, namespace: namespace, connection: self, auth: auth, data: data)
        sockets[name] = socket
        namespace.insert(socket)
        socket.join(socketID)
        socket.send(SocketIOPacket(type: .connect, namespace: name, data: ["sid": .string(socketID)]))
        server.logger.debug("socket connected", metadata: ["nsp": "\(name)", "socket": "\(socketID)"])
        server.sink?.socketDidConnect(socket)
    }

    private func sendConnectError(namespace: String, message: String, data: JSONValue?) {
        var payload: JSONValue = ["message": .string(message)]
        if let data, !data.isNull, case .object(var members) = payload {
            members["data"] = data
            payload = .object(members)
        }
        let messages = server.encodeMessages(SocketIOPacket(type: .connectError, namespace: namespace, data: payload))
        session.send(messages)
        server.metrics.sent(messages, recipients: 1)
    }

    /// Takes one socket out of its namespace; the session stays open even when it was the last.
    func remove(_ socket: SocketIOSocket, reason: DisconnectReason) {
        guard sockets[socket.namespace.name] === socket else { return }
        sockets.removeValue(forKey: socket.namespace.name)
        socket.closed()
        socket.namespace.removeSocket(socket)
        server.logger.debug("socket disconnected", metadata: [
            "nsp": "\(socket.namespace.name)", "socket": "\(socket.id)", "reason": "\(reason.rawValue)",
        ])
        server.sink?.socket(socket, didDisconnectWith: reason)
    }

    /// Tells every socket the server disconnects it, then closes the transport once what is
    /// queued is written: the client learns why when (if) it catches up.
    func disconnectSlowClient() {
        guard !isClosed else { return }
        for socket in sockets.values {
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
        connectTimeout?.cancel()
        connectTimeout = nil
        let abandoned = pendingConnects
        pendingConnects.removeAll()
        for (namespace, socketID) in abandoned {
            server.sink?.authorizationAbandoned(socketID: socketID, namespace: namespace)
        }
        for socket in Array(sockets.values) {
            remove(socket, reason: reason)
        }
    }
}
