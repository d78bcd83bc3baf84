import Logging
import Metrics
import NIOCore
import SidecastJSON
import SocketIO

/// How many other nodes a request waits for and how many answered: every request counts
/// "this node" the same way, outside the tally, as socket.io-adapter's `ClusterAdapter`
/// expects `serverCount() - 1` answers.
struct NodeTally {
    /// Unknown until the medium counted the nodes (a broadcast with acks is published first).
    var expected: Int?
    var answered = 0

    var isComplete: Bool {
        guard let expected else { return false }
        return answered >= expected
    }
}

/// One request of this node collecting the other nodes' answers.
protocol CollectingRequest: AnyObject {
    /// Takes one answer; false when it is not of this request's kind.
    func collect(_ response: ClusterResponse) -> Bool
    var isComplete: Bool { get }
    /// Calls the completion once, with what was collected or with the timeout.
    func finish(timedOut: Bool)
}

/// Collects the answers to an emit with acknowledgements, over one node or many.
///
/// Complete when every other node reported how many clients it asked and every client asked,
/// here and there, answered (how Socket.IO's `BroadcastOperator` decides); a timeout may end
/// it first.
final class BroadcastAckRequest: CollectingRequest {
    private var responses: [BroadcastAckResult.Response] = []
    private var expectedClients = 0
    private var nodes = NodeTally()
    private let completion: (BroadcastAckResult) -> Void
    private(set) var isDone = false
    /// Stops the answers of this node's sockets from counting.
    private var cancelLocal: () -> Void = {}
    /// False while this node's shards are still counting their sockets.
    private var localCounted = true
    var onFinish: (() -> Void)?

    init(completion: @escaping (BroadcastAckResult) -> Void) {
        self.completion = completion
    }

    /// Emits to this node's matching sockets, on every shard, and counts them in.
    func startLocally(on shards: NodeShards, _ packet: SocketIOPacket, options: BroadcastOptions) {
        localCounted = false
        cancelLocal = shards.broadcastWithAck(packet, options: options, counted: { count in
            self.expectedClients += count
            self.localCounted = true
            self.finishIfComplete()
        }, onAck: { socketID, args in
            self.add(.init(socketID: socketID, args: args))
        })
    }

    /// No other node takes part (a local broadcast, or a node alone): this node's answers are
    /// all there are, until `timeout`.
    func expectNoOtherNodes(timeout: TimeAmount, on eventLoop: EventLoop) {
        expect(otherNodes: 0)
        guard !isDone else { return }
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { self.finish(timedOut: true) }
        onFinish = { timer.cancel() }
    }

    /// How many other nodes will report their clients.
    func expect(otherNodes: Int) {
        nodes.expected = otherNodes
        finishIfComplete()
    }

    var isComplete: Bool {
        localCounted && nodes.isComplete && responses.count >= expectedClients
    }

    func collect(_ response: ClusterResponse) -> Bool {
        switch response {
        case .broadcastClientCount(_, let count):
            nodes.answered += 1
            expectedClients += count
        case .broadcastAck(_, let packet):
            // Answers from other nodes cross without their sender, as in the Node adapter.
            responses.append(.init(socketID: nil, args: packet.map { [$0] } ?? []))
        default:
            return false
        }
        return true
    }

    func finish(timedOut: Bool) {
        guard !isDone else { return }
        isDone = true
        if timedOut { cancelLocal() }
        onFinish?()
        onFinish = nil
        completion(BroadcastAckResult(responses: responses, expected: expectedClients, timedOut: timedOut))
    }

    private func add(_ response: BroadcastAckResult.Response) {
        guard !isDone else { return }
        responses.append(response)
        finishIfComplete()
    }

    private func finishIfComplete() {
        if !isDone, isComplete { finish(timedOut: false) }
    }
}

/// A `fetchSockets` across nodes: this node's sockets, then each other node's.
final class FetchRequest: CollectingRequest {
    private let namespace: String
    private var nodes: NodeTally
    private var sockets: [SocketDetails]
    private let completion: (Result<[SocketDetails], AdapterError>) -> Void

    init(namespace: String, otherNodes: Int, local: [SocketDetails], completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void) {
        self.namespace = namespace
        self.nodes = NodeTally(expected: otherNodes)
        self.sockets = local
        self.completion = completion
    }

    var isComplete: Bool { nodes.isComplete }

    func collect(_ response: ClusterResponse) -> Bool {
        guard case .fetchSockets(_, let remote) = response else { return false }
        nodes.answered += 1
        sockets += remote.map {
            SocketDetails(id: $0.id, namespace: namespace, rooms: $0.rooms, handshake: $0.handshake, data: $0.data)
        }
        return true
    }

    /// A fetch that misses a node's sockets fails: a partial list would look complete.
    func finish(timedOut: Bool) {
        completion(timedOut ? .failure(.timeout) : .success(sockets))
    }
}

/// An `allRooms` across nodes.
final class AllRoomsRequest: CollectingRequest {
    private var nodes: NodeTally
    private var rooms: Set<String>
    private let completion: (Result<Set<String>, AdapterError>) -> Void

    init(otherNodes: Int, local: Set<String>, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        self.nodes = NodeTally(expected: otherNodes)
        self.rooms = local
        self.completion = completion
    }

    var isComplete: Bool { nodes.isComplete }

    func collect(_ response: ClusterResponse) -> Bool {
        guard case .allRooms(_, let remote) = response else { return false }
        nodes.answered += 1
        rooms.formUnion(remote)
        return true
    }

    func finish(timedOut: Bool) {
        completion(timedOut ? .failure(.timeout) : .success(rooms))
    }
}

/// A `serverSideEmit` waiting for one answer from each other node.
final class ServerSideEmitRequest: CollectingRequest {
    private var nodes: NodeTally
    private var responses: [JSONValue] = []
    private let completion: (Result<ServerSideEmitResult, AdapterError>) -> Void

    init(otherNodes: Int, completion: @escaping (Result<ServerSideEmitResult, AdapterError>) -> Void) {
        self.nodes = NodeTally(expected: otherNodes)
        self.completion = completion
    }

    var isComplete: Bool { nodes.isComplete }

    func collect(_ response: ClusterResponse) -> Bool {
        guard case .serverSideEmit(_, let packet) = response else { return false }
        nodes.answered += 1
        responses.append(packet?.revivingNodeBuffers ?? .null)
        return true
    }

    /// A timeout still hands over the answers that came, as Node passes them with its error.
    func finish(timedOut: Bool) {
        completion(.success(ServerSideEmitResult(responses: responses, expected: nodes.expected ?? 0, timedOut: timedOut)))
    }
}

/// This node's requests waiting for other nodes' answers, by request id, each with its timeout.
/// Confined to the Socket.IO server's event loop.
final class PendingRequests {
    private var entries: [String: (request: CollectingRequest, timer: Scheduled<Void>)] = [:]
    private let eventLoop: EventLoop
    private let logger: Logger
    private let timeouts = Counter(label: "sidecast_cluster_request_timeouts_total")

    init(eventLoop: EventLoop, logger: Logger) {
        self.eventLoop = eventLoop
        self.logger = logger
    }

    var count: Int { entries.count }

    /// Waits for answers until the request is complete or `timeout` passes, whichever first.
    func track(_ requestID: String, _ request: CollectingRequest, what: String, timeout: TimeAmount) {
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, self.entries.removeValue(forKey: requestID) != nil else { return }
            self.logger.info("cluster request timed out", metadata: ["request": "\(what)", "requestId": "\(requestID)"])
            self.timeouts.increment()
            request.finish(timedOut: true)
        }
        entries[requestID] = (request, timer)
        if request.isComplete { complete(requestID) }
    }

    /// An answer from another node; late ones (their request finished or timed out) are dropped.
    func received(_ response: ClusterResponse) {
        guard let request = entries[response.requestId]?.request else { return }
        guard request.collect(response) else {
            return logger.debug("ignoring an answer of the wrong kind", metadata: ["requestId": "\(response.requestId)"])
        }
        if request.isComplete { complete(response.requestId) }
    }

    /// Forgets a request that finished by other means (all of a broadcast's local answers came).
    func forget(_ requestID: String) {
        entries.removeValue(forKey: requestID)?.timer.cancel()
    }

    private func complete(_ requestID: String) {
        guard let entry = entries.removeValue(forKey: requestID) else { return }
        entry.timer.cancel()
        entry.request.finish(timedOut: false)
    }
}

extension JSONValue {
    /// Server-side emits may travel as JSON, where Node writes a Buffer as
    /// `{"type":"Buffer","data":[bytes]}`; this turns such objects back into binary values so
    /// backends get them as `$binary`, like binary from clients.
    var revivingNodeBuffers: JSONValue {
        switch self {
        case .array(let elements):
            return .array(elements.map(\.revivingNodeBuffers))
        case .object(let members):
            if members.count == 2, members["type"] == "Buffer", case .array(let bytes)? = members["data"] {
                var buffer = ByteBuffer()
                buffer.reserveCapacity(bytes.count)
                for byte in bytes {
                    guard let value = byte.intValue, (0...255).contains(value) else { return self }
                    buffer.writeInteger(UInt8(value))
                }
                return .binary(buffer)
            }
            return .object(members.mapValues(\.revivingNodeBuffers))
        default:
            return self
        }
    }
}
