import NIOCore
import SidecastJSON
import SocketIO

/// The single-node adapter: every operation is the Socket.IO server's own local one.
public final class LocalAdapter: Adapter {
    private let server: SocketIOServer
    public weak var delegate: AdapterDelegate?

    public init(server: SocketIOServer) {
        self.server = server
    }

    public func serve(namespace: String) {}

    public func close() {}

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        server.broadcast(packet, options: options)
    }

    public func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        completion: @escaping (BroadcastAckResult) -> Void
    ) {
        let request = BroadcastAckRequest(completion: completion)
        request.startLocally(on: server, packet, options: options)
        request.expect(otherNodes: 0)
        guard !request.isDone else { return }
        let timer = server.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            request.finish(timedOut: true)
        }
        request.onFinish = { timer.cancel() }
    }

    public func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.addSockets(options, rooms: rooms)
    }

    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        server.removeSockets(options, rooms: rooms)
    }

    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        server.disconnectSockets(options, close: close)
    }

    public func fetchSockets(
        _ options: BroadcastOptions,
        completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void
    ) {
        completion(.success(server.fetchSockets(options).map(SocketDetails.init)))
    }

    public func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        completion(.success(server.allRooms(namespace: namespace)))
    }

    /// A single node has no other node to tell: the emit reaches nobody and waits for no one.
    public func serverSideEmit(
        namespace: String,
        event: String,
        args: [JSONValue],
        ackTimeout: TimeAmount?,
        completion: @escaping (Result<ServerSideEmitResult, AdapterError>) -> Void
    ) {
        completion(.success(ServerSideEmitResult(responses: [], expected: 0, timedOut: false)))
    }
}
