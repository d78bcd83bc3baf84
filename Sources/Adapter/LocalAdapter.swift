import NIOCore
import SidecastJSON
import SocketIO

/// The single-node adapter: every operation is the local one, over this node's shards.
public final class LocalAdapter: Adapter {
    private let shards: NodeShards
    public weak var delegate: AdapterDelegate?

    public init(shards: NodeShards) {
        self.shards = shards
    }

    /// The adapter of a standalone node on one event loop. Call on the server's loop.
    public convenience init(server: SocketIOServer) {
        self.init(shards: NodeShards(server: server))
    }

    public func serve(namespace: String) {}

    public func close() {}

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        shards.broadcast(packet, options: options)
    }

    public func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        completion: @escaping (BroadcastAckResult) -> Void
    ) {
        let request = BroadcastAckRequest(completion: completion)
        request.startLocally(on: shards, packet, options: options)
        request.expectNoOtherNodes(timeout: timeout, on: shards.eventLoop)
    }

    public func addSockets(_ options: BroadcastOptions, rooms: [String]) {
        shards.addSockets(options, rooms: rooms)
    }

    public func removeSockets(_ options: BroadcastOptions, rooms: [String]) {
        shards.removeSockets(options, rooms: rooms)
    }

    public func disconnectSockets(_ options: BroadcastOptions, close: Bool) {
        shards.disconnectSockets(options, close: close)
    }

    public func fetchSockets(
        _ options: BroadcastOptions,
        completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void
    ) {
        shards.fetchSockets(options, describe: SocketDetails.init) { completion(.success($0)) }
    }

    public func allRooms(namespace: String, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        shards.allRooms(namespace: namespace) { completion(.success($0)) }
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
