import EngineIO
import Logging
import NIOCore
import SidecastJSON

/// The Socket.IO v5 server on top of an Engine.IO server: namespaces, sockets, rooms and acks.
///
/// All state is confined to `eventLoop`, the same loop the Engine.IO server runs on; like Node's
/// single thread, that keeps rooms and sockets free of locks.
public final class SocketIOServer {
    public let configuration: SocketIOServerConfiguration
    public let eventLoop: EventLoop
    public let logger: Logger
    /// Learns about connects, events and disconnects. Held weakly: the bridge owns the server.
    public weak var sink: SocketEventSink?
    /// The node's session store, set when `configuration.recovery` is: where dropped sockets'
    /// sessions go and recovering clients get them back from.
    public var recovery: SessionRecovery?
    public private(set) var namespaces: [String: Namespace] = [:]
    /// Volatile packets not sent because their client was over `maxBufferedBytes`.
    public private(set) var droppedVolatilePackets = 0
    /// Clients disconnected because they were over `maxBufferedBytes`.
    public private(set) var slowClientDisconnects = 0
    /// Set on a node of several shards: told when a room named like a socket id gets its first
    /// member here besides the socket itself (`true`) or loses its last such member. An emit
    /// to a socket id goes to the shard that has that socket, and to the other shards only
    /// where such a room exists (Node lets a socket join a room named after another socket);
    /// this keeps the list.
    public var onSocketNamedRoomChange: ((_ namespace: String, _ room: String, _ exists: Bool) -> Void)?
    private let encoder = SocketIOPacketEncoder()
    let metrics = SocketIOMetrics()

    public init(configuration: SocketIOServerConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// The namespace called `name`, created on first use.
    public func namespace(named name: String) -> Namespace {
        if let existing = namespaces[name] { return existing }
        let created = Namespace(name: name, server: self)
        namespaces[name] = created
        return created
    }

    /// A room of `namespace` got its first member besides its owner, or lost its last.
    func roomChanged(_ room: String, in namespace: String, exists: Bool) {
        guard let report = onSocketNamedRoomChange, room.utf8.count == RandomID.socketIDLength,
            LoopShard.index(of: room, count: configuration.shard.count) != nil
        else { return }
        report(namespace, room, exists)
    }

    /// The connected socket with this id in namespace `nsp`, if it is on this node.
    public func socket(id: String, namespace nsp: String) -> SocketIOSocket? {
        namespaces[nsp]?.sockets[id]
    }

    /// Encodes a packet once into Engine.IO messages that any number of sessions can send.
    public func encodeMessages(_ packet: SocketIOPacket) -> [EngineIOMessage] {
        if configuration.parser == .msgpack {
            return [.binary(MessagePackPacketCodec.encode(packet))]
        }
        let (text, attachments) = encoder.encode(packet)
        var messages = [EngineIOMessage.text(text)]
        messages.reserveCapacity(1 + attachments.count)
        for attachment in attachments { messages.append(.binary(attachment)) }
        return messages
    }

    /// Writes `messages` to a client unless it fell too far behind: then a volatile packet is
    /// dropped, and anything else disconnects the client (its sockets get a DISCONNECT it reads
    /// once it catches up; the transport closes after what was queued). Returns whether the
    /// messages were written, so callers can count deliveries once for all recipients.
    @discardableResult
    func deliver(_ messages: [EngineIOMessage], to socket: SocketIOSocket, volatile: Bool) -> Bool {
        let session = socket.session
        if session.send(messages, unlessBufferingMoreThan: configuration.maxBufferedBytes) { return true }
        if volatile {
            droppedVolatilePackets += 1
            metrics.volatileDrops.increment()
            return false
        }
        slowClientDisconnects += 1
        metrics.slowClientDrops.increment()
        logger.warning("disconnecting a client that does not keep up", metadata: [
            "sid": "\(session.id)", "buffered": "\(session.bufferedBytes)", "limit": "\(configuration.maxBufferedBytes)",
        ])
        socket.connection.disconnectSlowClient()
        return false
    }

    /// Closes every client, as on shutdown; sockets leave with `reason`.
    public func closeAll(reason: DisconnectReason) {
        for namespace in namespaces.values {
            for socket in Array(namespace.sockets.values) {
                socket.connection.close(reason: reason)
            }
        }
    }

}

extension SocketIOServer: EngineIOServerDelegate {
    public func sessionDidOpen(_ session: EngineIOSession) {
        let connection = SocketIOConnection(server: self, session: session)
        session.userData = connection
        connection.start()
    }

    public func session(_ session: EngineIOSession, didReceiveText text: ByteBuffer) {
        metrics.received(bytes: text.readableBytes + 1)
        (session.userData as? SocketIOConnection)?.receive(text: text)
    }

    public func session(_ session: EngineIOSession, didReceiveBinary data: ByteBuffer) {
        metrics.received(bytes: data.readableBytes)
        (session.userData as? SocketIOConnection)?.receive(binary: data)
    }

    public func session(_ session: EngineIOSession, didCloseWith reason: EngineIOCloseReason) {
        (session.userData as? SocketIOConnection)?.sessionClosed(reason: DisconnectReason(reason))
        session.userData = nil
    }
}
