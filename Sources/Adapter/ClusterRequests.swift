import Logging
import Metrics
import NIOCore
import SidecastJSON
import SocketIO

/// Collects the answers to an emit with acknowledgements, over one node or many.
///
/// Complete when every node expected reported how many clients it asked and every one of those
/// clients answered (how Socket.IO's `BroadcastOperator` decides); a timeout may end it first.
final class BroadcastAckRequest {
    private var responses: [BroadcastAckResult.Response] = []
    private var expectedClients = 0
    private var reportedNodes = 0
    private var expectedNodes: Int?
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

    /// Emits to this node's matching sockets and reports them as this node's share; returns
    /// what stops their answers from counting.
    func startLocally(on server: SocketIOServer, _ packet: SocketIOPacket, options: BroadcastOptions) -> () -> Void {
        let (count, cancel) = server.broadcastWithAck(packet, options: options) { socketID, args in
            self.add(.init(socketID: socketID, args: args))
        }
        nodeReported(clientCount: count)
        return cancel
    }

    /// A node (this one included) says how many of its clients it asked.
    func nodeReported(clientCount: Int) {
        reportedNodes += 1
        expectedClients += clientCount
        finishIfComplete()
    }

    /// How many nodes will report, this one included.
    func expect(nodes: Int) {
        expectedNodes = nodes
        finishIfComplete()
    }

    func finish(timedOut: Bool) {
        guard !isDone else { return }
        isDone = true
        onFinish?()
        onFinish = nil
        completion(BroadcastAckResult(responses: responses, expected: expectedClients, timedOut: timedOut))
    }

    private func finishIfComplete() {
        if let expectedNodes, reportedNodes >= expectedNodes, responses.count >= expectedClients {
            finish(timedOut: false)
        }
    }
}

/// A `fetchSockets` across nodes: this node's sockets, then each other node's.
final class FetchRequest {
    let namespace: String
    let expected: Int
    var answered = 1
    var sockets: [SocketDetails]
    let completion: (Result<[SocketDetails], AdapterError>) -> Void

    init(namespace: String, expected: Int, sockets: [SocketDetails], completion: @escaping (Result<[SocketDetails], AdapterError>) -> Void) {
        self.namespace = namespace
        self.expected = expected
        self.sockets = sockets
        self.completion = completion
    }
}

/// An `allRooms` across nodes.
final class AllRoomsRequest {
    let expected: Int
    var answered = 1
    var rooms: Set<String>
    let completion: (Result<Set<String>, AdapterError>) -> Void

    init(expected: Int, rooms: Set<String>, completion: @escaping (Result<Set<String>, AdapterError>) -> Void) {
        self.expected = expected
        self.rooms = rooms
        self.completion = completion
    }
}

/// A `serverSideEmit` waiting for one answer from each other node.
final class ServerSideEmitRequest {
    private let expected: Int
    private var responses: [JSONValue] = []
    private let completion: (ServerSideEmitResult) -> Void
    private var isDone = false
    var onFinish: (() -> Void)?

    init(expected: Int, completion: @escaping (ServerSideEmitResult) -> Void) {
        self.expected = expected
        self.completion = completion
    }

    func add(_ response: JSONValue) {
        guard !isDone else { return }
        responses.append(response)
        if responses.count >= expected { finish(timedOut: false) }
    }

    func finish(timedOut: Bool) {
        guard !isDone else { return }
        isDone = true
        onFinish?()
        onFinish = nil
        completion(ServerSideEmitResult(responses: responses, expected: expected, timedOut: timedOut))
    }
}

/// This node's requests waiting for other nodes' answers, by request id, each with its timeout.
/// Confined to the Socket.IO server's event loop.
final class PendingRequests<Request> {
    private var entries: [String: (request: Request, timer: Scheduled<Void>)] = [:]
    private let eventLoop: EventLoop
    private let defaultTimeout: TimeAmount
    private let logger: Logger
    private let timeouts = Counter(label: "sidecast_cluster_request_timeouts_total")

    init(eventLoop: EventLoop, defaultTimeout: TimeAmount, logger: Logger) {
        self.eventLoop = eventLoop
        self.defaultTimeout = defaultTimeout
        self.logger = logger
    }

    subscript(requestID: String) -> Request? {
        entries[requestID]?.request
    }

    /// Registers a request; `onTimeout` runs when not every node answered in time.
    func track(
        _ requestID: String,
        _ request: Request,
        what: String,
        timeout: TimeAmount? = nil,
        onTimeout: @escaping () -> Void
    ) {
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout ?? defaultTimeout) { [weak self] in
            guard let self, self.entries.removeValue(forKey: requestID) != nil else { return }
            self.logger.info("cluster request timed out", metadata: ["request": "\(what)", "requestId": "\(requestID)"])
            self.timeouts.increment()
            onTimeout()
        }
        entries[requestID] = (request, timer)
    }

    /// The request got every answer: forget it and stop its timer.
    func finish(_ requestID: String) {
        entries.removeValue(forKey: requestID)?.timer.cancel()
    }
}

