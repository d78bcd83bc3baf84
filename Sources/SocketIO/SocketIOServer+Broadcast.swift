import EngineIO
import NIOCore
import SidecastJSON

/// Operations on the local sockets a `BroadcastOptions` selects. Adapters call these: the local
/// adapter directly, the cluster adapter for what other nodes ask of this one.
extension SocketIOServer {
    /// Sends `packet` to every matching local socket. The packet is encoded once and the same
    /// bytes go to every recipient.
    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        guard let namespace = namespaces[options.namespace] else { return }
        let targets = namespace.targets(matching: options)
        guard !targets.isEmpty else { return }
        let messages = broadcastMessages(packet, recipients: targets.count)
        let volatile = options.volatile
        var delivered = 0
        targets.forEach { socket in
            if deliver(messages, to: socket, volatile: volatile) { delivered += 1 }
        }
        metrics.sent(messages, recipients: delivered)
    }

    /// Sends `packet` with one shared ack id to every matching socket. `onAck` runs once per
    /// socket that answers; the return value is how many sockets were asked. Answers that come
    /// after `cancel` is called are ignored.
    public func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        onAck: @escaping (_ socketID: String, _ args: [JSONValue]) -> Void
    ) -> (count: Int, cancel: () -> Void) {
        guard let namespace = namespaces[options.namespace] else { return (0, {}) }
        let targets = namespace.sockets(matching: options)
        guard !targets.isEmpty else { return (0, {}) }
        var packet = packet
        let ackID = namespace.makeAckID()
        packet.id = ackID
        let messages = broadcastMessages(packet, recipients: targets.count)
        var delivered = 0
        for socket in targets {
            let socketID = socket.id
            socket.awaitAck(ackID) { result in
                if case .success(let args) = result { onAck(socketID, args) }
            }
            if deliver(messages, to: socket, volatile: options.volatile) { delivered += 1 }
        }
        metrics.sent(messages, recipients: delivered)
        let cancel: () -> Void = { [weak namespace] in
            for socket in targets where namespace?.sockets[socket.id] === socket {
                socket.cancelAwaitedAck(ackID)
            }
        }
        return (targets.count, cancel)
    }

    /// Encodes a broadcast's packet once: the Engine.IO "4" and the packet's text go straight
    /// into the one buffer every recipient's frame shares, with no `String` in between. With
    /// more than one recipient the WebSocket frames are encoded once too.
    private func broadcastMessages(_ packet: SocketIOPacket, recipients: Int) -> [EngineIOMessage] {
        if configuration.parser == .msgpack {
            let messages = encodeMessages(packet)
            return recipients > 1 ? EngineIOBroadcastEncoder.prepare(messages) : messages
        }
        var text = ByteBuffer()
        text.reserveCapacity(32 + packet.namespace.utf8.count + (packet.printedData?.bytes.readableBytes ?? 64))
        text.writeInteger(UInt8(ascii: "4"))
        let attachments = SocketIOPacketEncoder().encode(packet, into: &text)
        var messages = [EngineIOMessage.text(encoded: text)]
        messages.reserveCapacity(1 + attachments.count)
        for attachment in attachments { messages.append(.binary(attachment)) }
        return recipients > 1 ? EngineIOBroadcastEncoder.prepare(messages) : messages
    }

    /// `socketsJoin`: matching sockets join every room in `rooms`.
    public func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        guard let namespace = namespaces[options.namespace] else { return }
        for socket in namespace.sockets(matching: options) {
            for room in rooms { socket.join(room) }
        }
    }

    /// `socketsLeave`: matching sockets leave every room in `rooms`.
    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        guard let namespace = namespaces[options.namespace] else { return }
        for socket in namespace.sockets(matching: options) {
            for room in rooms { socket.leave(room) }
        }
    }

    /// `disconnectSockets`: matching sockets leave the namespace, or close their connection.
    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        guard let namespace = namespaces[options.namespace] else { return }
        for socket in namespace.sockets(matching: options) {
            socket.disconnect(close: close)
        }
    }

    /// `fetchSockets`: the matching local sockets.
    public func fetchSockets(_ options: BroadcastOptions) -> [SocketIOSocket] {
        namespaces[options.namespace]?.sockets(matching: options) ?? []
    }

    /// Every room of a namespace on this node, sockets' own-id rooms included (as Node's `allRooms`).
    public func allRooms(namespace name: String) -> Set<String> {
        guard let namespace = namespaces[name] else { return [] }
        return Set(namespace.rooms.keys)
    }
}
