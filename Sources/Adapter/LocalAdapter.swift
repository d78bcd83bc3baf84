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

    public func broadcast(_ packet: SocketIOPacket, options: BroadcastOptions) {
        server.broadcast(packet, options: options)
    }

    public func broadcastWithAck(
        _ packet: SocketIOPacket,
        options: BroadcastOptions,
        timeout: TimeAmount,
        completion: @escaping (BroadcastAckResult) -> Void
    ) {
        let collector = AckCollector(completion: completion)
        let (count, cancel) = server.broadcastWithAck(packet, options: options) { socketID, args in
            collector.add(.init(socketID: socketID, args: args))
        }
        collector.expect(count)
        guard !collector.isDone else { return }
        let timer = server.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            cancel()
            collector.finish(timedOut: true)
        }
        collector.onFinish = { timer.cancel() }
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
        completion: @escaping (ServerSideEmitResult) -> Void
    ) {
        completion(ServerSideEmitResult(responses: [], expected: 0, timedOut: false))
    }
}

/// Gathers ack answers until the expected number arrived or a timeout finishes it early.
final class AckCollector {
    private var responses: [BroadcastAckResult.Response] = []
    private var expected: Int?
    private let completion: (BroadcastAckResult) -> Void
    private(set) var isDone = false
    var onFinish: (() -> Void)?

    init(completion: @escaping (BroadcastAckResult) -> Void) {
        self.completion = completion
    }

    func add(_ response: BroadcastAckResult.Response) {
        guard !isDone else { return }
        responses.append(response)
        finishIfComplete()
    }

    func expect(_ count: Int) {
        expected = (expected ?? 0) + count
        finishIfComplete()
    }

    func finish(timedOut: Bool) {
        guard !isDone else { return }
        isDone = true
        onFinish?()
        onFinish = nil
        completion(BroadcastAckResult(responses: responses, expected: expected ?? responses.count, timedOut: timedOut))
    }

    private func finishIfComplete() {
        if let expected, responses.count >= expected { finish(timedOut: false) }
    }
}
