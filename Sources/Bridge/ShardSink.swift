import NIOCore
import SidecastJSON
import SocketIO

/// The Socket.IO sink of a shard other than the bridge's: on that shard's loop, it hands its
/// clients' connects, events and disconnects to the bridge's loop, one hand-off each, so a
/// socket's messages reach the bridge in the order its client sent them. Authorization is
/// asked of the bridge and its decision handed back.
public final class ShardSink: SocketEventSink {
    private let bridge: NIOLoopBound<Bridge>
    private let loop: EventLoop
    /// The namespaces that exist, as the bridge last shared them.
    var served: Set<String>

    init(bridge: NIOLoopBound<Bridge>, loop: EventLoop, served: Set<String>) {
        self.bridge = bridge
        self.loop = loop
        self.served = served
    }

    public func namespaceExists(_ namespace: String) -> Bool {
        served.contains(namespace)
    }

    public func authorize(_ request: ConnectRequest, decide: @escaping (ConnectDecision) -> Void) {
        let bridge = self.bridge
        let loop = self.loop
        let decideHere = NIOLoopBound(decide, eventLoop: loop)
        bridge.eventLoop.execute {
            bridge.value.authorize(request) { decision in
                loop.execute { decideHere.value(decision) }
            }
        }
    }

    public func authorizationAbandoned(socketID: String, namespace: String) {
        let bridge = self.bridge
        bridge.eventLoop.execute { bridge.value.authorizationAbandoned(socketID: socketID, namespace: namespace) }
    }

    /// The `connect` line is made here, on the shard's loop: taking the handshake apart is most
    /// of what a new client costs the bridge's loop.
    public func socketDidConnect(_ socket: SocketIOSocket) {
        let bridge = self.bridge
        let remote = RemoteSocket(socket, loop: loop, connecting: true)
        let line = Backend.line(BackendMessage.connect(socket, resumed: false), allocator: ByteBufferAllocator())
        bridge.eventLoop.execute { bridge.value.remoteSocketDidConnect(remote, line: line) }
    }

    /// The event's line is written here, on the shard's loop, from the tree it was parsed
    /// into: the bridge's loop only routes it.
    public func socket(_ socket: SocketIOSocket, didReceive event: SocketIOEvent) {
        let bridge = self.bridge
        let remote = RemoteSocket(socket, loop: loop, connecting: false)
        let name = event.name
        let line = BackendMessage.eventLine(sid: remote.id, namespace: remote.namespace, event: event, allocator: ByteBufferAllocator())
        bridge.eventLoop.execute {
            bridge.value.remoteSocket(remote, didReceiveEvent: name, line: line)
        }
    }

    public func socket(_ socket: SocketIOSocket, didDisconnectWith reason: DisconnectReason) {
        let bridge = self.bridge
        let remote = RemoteSocket(socket, loop: loop, connecting: false)
        bridge.eventLoop.execute { bridge.value.remoteSocket(remote, didDisconnectWith: reason) }
    }
}
