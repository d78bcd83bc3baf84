import Logging
import Metrics
import NIOCore
import NIOHTTP1

/// The node of a cluster that relays sessions (`--relay-sessions`), as written into every
/// session id it makes: four characters of the id alphabet, 24 bits.
///
/// A sid is 15 characters (90 bits): the first two say the loop's shard (``LoopShard``, 12
/// bits, of which `log2(threads)` are spent), characters 2 to 5 say the node, and the other 9
/// (54 bits, plus what the shard leaves random) are random. Any node reads the owner off the
/// sid, so nothing is looked up and nothing is shared but the bus. Nodes draw their tag at
/// random at start: two of `n` nodes share one with a chance of about `n² / 2²⁵` (1 in 3,300
/// for 100 nodes).
public struct RelayNode: Sendable, Hashable, CustomStringConvertible {
    public static let length = 4
    /// Where the tag starts in a sid: after the shard's two characters.
    static let offset = 2

    public let tag: String

    /// A tag of four id characters; nil for anything else.
    public init?(tag: String) {
        guard tag.utf8.count == Self.length, tag.utf8.allSatisfy({ RandomID.value(of: $0) != nil }) else { return nil }
        self.tag = tag
    }

    public static func random() -> RelayNode {
        let id = RandomID.make(length: Self.length + Self.offset)
        return RelayNode(tag: String(id.dropFirst(Self.offset)))!
    }

    /// The node that made `sid`; nil for an id not of the length sidecast gives its sids.
    public init?(owning sid: some StringProtocol) {
        let characters = Array(sid.utf8)
        guard characters.count == RandomID.length else { return nil }
        self.init(tag: String(decoding: characters[Self.offset..<Self.offset + Self.length], as: UTF8.self))
    }

    public var description: String { tag }
}

/// What a relayed polling request is, as the owner serves it.
public enum RelayedRequestKind: Int, Sendable, Hashable {
    case poll = 0
    /// A POST with its whole body.
    case post = 1
    /// A POST the receiving node refused (body over max-payload): the session fails.
    case refusedPost = 2
    /// Any other method: "bad request" once the sid is known valid.
    case other = 3
}

/// One Engine.IO packet or message as it crosses the bus: its text form with the type digit,
/// or raw binary bytes. An empty text stands for a packet that did not parse.
public struct RelayedFrame: Sendable, Hashable {
    public var isBinary: Bool
    public var bytes: ByteBuffer

    public init(isBinary: Bool, bytes: ByteBuffer) {
        self.isBinary = isBinary
        self.bytes = bytes
    }

    init(_ message: EngineIOMessage) {
        switch message.storage {
        case .text(let text): self.init(isBinary: false, bytes: text)
        case .binary(let data): self.init(isBinary: true, bytes: data)
        }
    }

    init(_ packet: EngineIOPacket?) {
        func text(_ type: EngineIOPacketType, _ payload: ByteBuffer? = nil) -> RelayedFrame {
            var bytes = ByteBuffer()
            bytes.writeInteger(type.rawValue)
            if let payload { bytes.writeImmutableBuffer(payload) }
            return RelayedFrame(isBinary: false, bytes: bytes)
        }
        switch packet {
        case nil: self.init(isBinary: false, bytes: ByteBuffer())
        case .binary(let data): self.init(isBinary: true, bytes: data)
        case .open: self = text(.open)
        case .close: self = text(.close)
        case .ping(let payload): self = text(.ping, payload)
        case .pong(let payload): self = text(.pong, payload)
        case .text(let payload): self = text(.message, payload)
        case .upgrade: self = text(.upgrade)
        case .noop: self = text(.noop)
        }
    }

    var message: EngineIOMessage {
        EngineIOMessage(storage: isBinary ? .binary(bytes) : .text(bytes))
    }

    var packet: EngineIOPacket? {
        isBinary ? .binary(bytes) : EngineIOPacket(text: bytes)
    }
}

/// One message between two nodes about a session one owns and the other serves a connection
/// of. Ids are the serving node's, unique on it; messages to the owner also carry the sid,
/// which says the owner's loop.
public enum SessionRelayMessage: Sendable, Hashable {
    // To the owner.
    /// A polling request that reached the sender.
    case request(id: UInt64, sid: String, transport: String, method: String, kind: RelayedRequestKind, binary: Bool, body: ByteBuffer)
    /// The client's connection of request `id` closed before its answer, or the sender gave up.
    case requestClosed(id: UInt64, sid: String)
    /// A WebSocket for the session opened on the sender: the session upgrades to it.
    case upgrade(id: UInt64, sid: String)
    /// Packets the client sent on that WebSocket, in order.
    case packets(id: UInt64, sid: String, [RelayedFrame])
    case webSocketClosed(id: UInt64, sid: String, failed: Bool)
    /// The WebSocket's backlog, when it turned unwritable, after each flush while it stays so,
    /// and when it drains.
    case webSocketReport(id: UInt64, sid: String, writable: Bool, bufferedBytes: Int)

    // From the owner.
    /// Request `id` waits for the session (an empty long-poll, a POST while reading is paused).
    case held(id: UInt64)
    /// A long-poll's payload, encoded for the session's protocol; `binary` for a v3 XHR2 payload.
    case pollAnswer(id: UInt64, body: ByteBuffer, binary: Bool)
    /// A POST's answer: "ok", or the Engine.IO error code.
    case postAnswer(id: UInt64, error: Int?)
    /// The request was refused with the Engine.IO error code before the session took it.
    case refused(id: UInt64, error: Int)
    /// Messages for WebSockets served by the recipient, each id's in order.
    case frames([RelayedFrames])
    /// Sends a close frame after what was sent before, then closes the connection.
    case closeWebSocket(id: UInt64)
    case readWebSocket(id: UInt64, paused: Bool)
}

/// Messages for one relayed WebSocket.
public struct RelayedFrames: Sendable, Hashable {
    public var id: UInt64
    public var frames: [RelayedFrame]

    public init(id: UInt64, frames: [RelayedFrame]) {
        self.id = id
        self.frames = frames
    }
}

/// The cluster's bus as the relay uses it: one channel per node. Confined to the home loop.
public protocol SessionRelayBus: AnyObject {
    /// Publishes to `node`'s channel; `from` is this node.
    func publish(_ message: SessionRelayMessage, to node: RelayNode)
    /// Whether `node` still listens on its channel; fails when the bus cannot tell (Redis is
    /// unreachable), which must not count as "gone".
    func isListening(_ node: RelayNode) -> EventLoopFuture<Bool>
}

/// The relay's metrics, node-wide.
struct NodeRelayMetrics {
    private let requests: [RelayedRequestKind: Counter]
    private let upgrades = Counter(label: "sidecast_relay_requests_total", dimensions: [("kind", "upgrade")])
    private let timeouts = Counter(label: "sidecast_relay_failures_total", dimensions: [("reason", "timeout")])
    private let ownersGone = Counter(label: "sidecast_relay_failures_total", dimensions: [("reason", "owner_gone")])
    /// From publishing a request to the owner's first answer (its answer or its "held").
    private let latency = Metrics.Timer(label: "sidecast_relay_latency_seconds")

    init() {
        var requests: [RelayedRequestKind: Counter] = [:]
        for (kind, label) in [(RelayedRequestKind.poll, "poll"), (.post, "post"), (.refusedPost, "post"), (.other, "other")] {
            requests[kind] = Counter(label: "sidecast_relay_requests_total", dimensions: [("kind", label)])
        }
        self.requests = requests
    }

    func relayed(_ kind: RelayedRequestKind) { requests[kind]?.increment() }
    func relayedUpgrade() { upgrades.increment() }
    func timedOut() { timeouts.increment() }
    func closedForGoneOwner(_ count: Int) { ownersGone.increment(by: Int64(count)) }
    func answered(after start: NIODeadline) { latency.recordNanoseconds((NIODeadline.now() - start).nanoseconds) }
}

/// Relays the requests of sessions owned by other nodes and serves those of this node's
/// sessions that reached others, over the cluster's bus (Redis). Lives on the home loop, next
/// to the bus; the shards hand it requests and it hands them answers.
///
/// Polling requests are relayed whole: the receiving node reads a POST to its end (refusing it
/// past max-payload as the owner would), checks the origin and answers CORS itself, and the
/// owner answers with the payload or the error it would have sent. The owner acknowledges a
/// request at once, with its answer or with "held"; a request not acknowledged within the
/// timeout, or held longer than a ping interval and timeout (the owner answers every poll
/// within a ping interval), is answered `400 {"code":1,"message":"Session ID unknown"}`, and
/// the client reconnects.
///
/// A WebSocket upgrade of a session owned elsewhere stays on the node that took the
/// connection, and its frames are relayed (see `RemoteWebSocket`). An owner that dies without
/// draining sends no close for them: while this node relays WebSockets for an owner, it asks
/// the bus every `ownerCheckInterval` whether the owner still listens on its channel (one
/// question per owner, however many WebSockets), and closes them once the bus answers "no"
/// twice in a row, so their clients reconnect at once rather than at their ping timeout. Two
/// answers, because an owner whose Redis link just dropped is unsubscribed until it is back;
/// no answer (Redis unreachable) closes nothing.
///
/// Where a relayed request differs from one the owner reads itself: a POST reaches the owner
/// whole, once read, so a second POST sent while the first's body is still arriving is refused
/// only if both reach the owner before the first is answered; and while Redis is unreachable
/// requests wait in the Redis client's outbox, so the client gets "Session ID unknown" at the
/// timeout and a request may still reach the owner after Redis is back (the "closed" notice
/// that follows it makes the owner drop a long-poll; a POST's packets are delivered).
public final class NodeRelay {
    public let node: RelayNode
    public let eventLoop: EventLoop
    /// How long the owner has to acknowledge a request.
    let timeout: TimeAmount
    /// How long it may hold a request.
    let holdLimit: TimeAmount
    public var bus: SessionRelayBus?
    let logger: Logger
    let metrics = NodeRelayMetrics()
    var shards: [NIOLoopBound<EngineIOServer>] = []
    /// Requests this node relayed, by id.
    private var pending: [UInt64: Pending] = [:]
    /// How often an owner of WebSockets this node relays is checked for.
    let ownerCheckInterval: TimeAmount
    /// WebSockets this node serves for sessions of others, by id.
    private var webSockets: [UInt64: RelayedWebSocket] = [:]
    /// The owners of those WebSockets, each watched while it has one here.
    private var owners: [RelayNode: OwnerWatch] = [:]
    /// Frames for other nodes' WebSockets, sent once per round of this loop, one message per node.
    private var outgoingFrames: [RelayNode: [RelayedFrames]] = [:]

    private struct Pending {
        let owner: RelayNode
        let sid: String
        let handler: NIOLoopBound<EngineIOHTTPHandler>
        let start: NIODeadline
        var acknowledged = false
        var timer: Scheduled<Void>
    }

    private struct RelayedWebSocket {
        let owner: RelayNode
        let handler: NIOLoopBound<WebSocketTransportHandler>
    }

    private struct OwnerWatch {
        var webSockets = 0
        /// "Not listening" answers in a row.
        var misses = 0
        var isChecking = false
        var timer: Scheduled<Void>?
    }

    public init(node: RelayNode, eventLoop: EventLoop, timeout: TimeAmount, holdLimit: TimeAmount,
                ownerCheckInterval: TimeAmount = .seconds(2), logger: Logger) {
        self.node = node
        self.eventLoop = eventLoop
        self.timeout = timeout
        self.holdLimit = holdLimit
        self.ownerCheckInterval = ownerCheckInterval
        self.logger = logger
    }

    /// Makes every shard's server relay through this relay. Call on the home loop before the
    /// servers take connections; each server is joined on its own loop.
    public func join(shards: [NIOLoopBound<EngineIOServer>]) -> EventLoopFuture<Void> {
        self.shards = shards
        let relay = NIOLoopBound(self, eventLoop: eventLoop)
        let node = self.node
        let joined = shards.map { shard in
            shard.eventLoop.submit { shard.value.join(relay: relay, node: node) }
        }
        return EventLoopFuture.andAllSucceed(joined, on: eventLoop)
    }

    /// Completes once what the shards had queued for other nodes when it was called is on the
    /// bus. At shutdown the closes of relayed WebSockets, and their last frames, hop from the
    /// shard's loop to this relay's before they are published; the Redis client, which drops a
    /// publish once it is shutting down, waits for this. Call on the relay's loop.
    public func flush() -> EventLoopFuture<Void> {
        // Each loop runs its tasks in order: a task behind a shard's queued writes runs after
        // them, and the hop back to this loop, then one more task here, after the sends those
        // writes queued on this loop.
        let shardsDone = shards.map { $0.eventLoop.submit {} }
        return EventLoopFuture.andAllComplete(shardsDone, on: eventLoop).assumeIsolated().flatMap { [self] in
            eventLoop.assumeIsolated().submit { [self] in flushFrames() }
        }.nonisolated()
    }

    // MARK: Sending side (the node that has the client's connection)

    /// Sends a polling request to its owner; the answer goes to `handler`.
    func relay(_ message: SessionRelayMessage, id: UInt64, sid: String, kind: RelayedRequestKind, to owner: RelayNode,
               answeringTo handler: NIOLoopBound<EngineIOHTTPHandler>) {
        guard let bus else { return Self.answer(handler, .refused(id: id, error: EngineIOError.unknownSid.rawValue)) }
        metrics.relayed(kind)
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in giveUp(id) }
        pending[id] = Pending(owner: owner, sid: sid, handler: handler, start: .now(), timer: timer)
        bus.publish(message, to: owner)
    }

    /// A notice that waits for no answer: a POST refused here.
    func notify(_ message: SessionRelayMessage, to owner: RelayNode) {
        bus?.publish(message, to: owner)
    }

    /// The client's connection closed before the answer came.
    func cancel(_ id: UInt64) {
        guard let request = pending.removeValue(forKey: id) else { return }
        request.timer.cancel()
        bus?.publish(.requestClosed(id: id, sid: request.sid), to: request.owner)
    }

    /// The owner did not answer in time: the client gets "Session ID unknown", the owner (if it
    /// is there after all) hears the request is gone.
    private func giveUp(_ id: UInt64) {
        guard let request = pending.removeValue(forKey: id) else { return }
        metrics.timedOut()
        logger.debug("relayed request not answered in time", metadata: ["sid": "\(request.sid)", "node": "\(request.owner)"])
        bus?.publish(.requestClosed(id: id, sid: request.sid), to: request.owner)
        Self.answer(request.handler, .refused(id: id, error: EngineIOError.unknownSid.rawValue))
    }

    /// Opens a relayed WebSocket: the owner's session upgrades to it.
    func relayUpgrade(id: UInt64, sid: String, to owner: RelayNode, handler: NIOLoopBound<WebSocketTransportHandler>) {
        guard let bus else {
            handler.eventLoop.execute { handler.value.close() }
            return
        }
        metrics.relayedUpgrade()
        webSockets[id] = RelayedWebSocket(owner: owner, handler: handler)
        watch(owner)
        bus.publish(.upgrade(id: id, sid: sid), to: owner)
    }

    /// What the client sent on a relayed WebSocket, or that it closed.
    func forward(_ message: SessionRelayMessage, to owner: RelayNode) {
        switch message {
        case .webSocketClosed(let id, _, _): _ = removeWebSocket(id)
        default: break
        }
        bus?.publish(message, to: owner)
    }

    private func removeWebSocket(_ id: UInt64) -> NIOLoopBound<WebSocketTransportHandler>? {
        guard let webSocket = webSockets.removeValue(forKey: id) else { return nil }
        owners[webSocket.owner]?.webSockets -= 1
        if owners[webSocket.owner]?.webSockets == 0 {
            owners.removeValue(forKey: webSocket.owner)?.timer?.cancel()
        }
        return webSocket.handler
    }

    /// Counts a WebSocket relayed for `owner`, and starts checking for the owner with its first.
    private func watch(_ owner: RelayNode) {
        if owners[owner] == nil {
            owners[owner] = OwnerWatch()
            scheduleCheck(of: owner)
        }
        owners[owner]!.webSockets += 1
    }

    private func scheduleCheck(of owner: RelayNode) {
        guard owners[owner] != nil else { return }
        owners[owner]!.timer = eventLoop.assumeIsolated().scheduleTask(in: ownerCheckInterval) { [self] in
            scheduleCheck(of: owner)
            checkOwner(owner)
        }
    }

    /// Asks the bus about `owner`, unless the last question is still unanswered.
    private func checkOwner(_ owner: RelayNode) {
        guard let bus, owners[owner]?.isChecking == false else { return }
        owners[owner]!.isChecking = true
        bus.isListening(owner).assumeIsolated().whenComplete { [self] result in
            guard owners[owner] != nil else { return }
            owners[owner]!.isChecking = false
            switch result {
            case .success(true): owners[owner]!.misses = 0
            case .success(false):
                owners[owner]!.misses += 1
                if owners[owner]!.misses >= 2 { ownerGone(owner) }
            case .failure(let error):
                logger.debug("could not check a relayed WebSockets' owner", metadata: ["node": "\(owner)", "error": "\(error)"])
            }
        }
    }

    /// Closes the WebSockets relayed for `owner`, which stopped listening: it died.
    private func ownerGone(_ owner: RelayNode) {
        let ids = webSockets.compactMap { $0.value.owner == owner ? $0.key : nil }
        logger.info("closing WebSockets relayed for a node that is gone", metadata: ["node": "\(owner)", "count": "\(ids.count)"])
        metrics.closedForGoneOwner(ids.count)
        for id in ids {
            guard let handler = removeWebSocket(id) else { continue }
            handler.eventLoop.execute { handler.value.close() }
        }
    }

    private static func answer(_ handler: NIOLoopBound<EngineIOHTTPHandler>, _ message: SessionRelayMessage) {
        handler.eventLoop.execute { handler.value.relayAnswered(message) }
    }

    // MARK: Owning side

    /// Frames for a WebSocket that `node` serves, sent at the end of this loop's round.
    func send(_ frames: [RelayedFrames], to node: RelayNode) {
        if outgoingFrames.isEmpty {
            eventLoop.assumeIsolated().execute { [self] in flushFrames() }
        }
        outgoingFrames[node, default: []].append(contentsOf: frames)
    }

    /// An answer or notice for `node`; frames queued before it go first.
    func send(_ message: SessionRelayMessage, to node: RelayNode) {
        if outgoingFrames[node] != nil { flushFrames() }
        bus?.publish(message, to: node)
    }

    private func flushFrames() {
        let outgoing = outgoingFrames
        outgoingFrames = [:]
        for (node, frames) in outgoing { bus?.publish(.frames(frames), to: node) }
    }

    // MARK: Receiving from the bus

    /// A message from `sender`'s channel.
    public func received(_ message: SessionRelayMessage, from sender: RelayNode) {
        switch message {
        case .request(_, let sid, _, _, _, _, _), .requestClosed(_, let sid), .upgrade(_, let sid),
             .packets(_, let sid, _), .webSocketClosed(_, let sid, _), .webSocketReport(_, let sid, _, _):
            guard let shard = shard(owning: sid) else { return }
            shard.eventLoop.execute { shard.value.servedRemotely(message, from: sender) }
        case .held(let id):
            guard var request = pending[id] else { return }
            if !request.acknowledged { metrics.answered(after: request.start) }
            request.acknowledged = true
            request.timer.cancel()
            request.timer = eventLoop.assumeIsolated().scheduleTask(in: holdLimit) { [self] in giveUp(id) }
            pending[id] = request
        case .pollAnswer(let id, _, _), .postAnswer(let id, _), .refused(let id, _):
            guard let request = pending.removeValue(forKey: id) else { return }
            request.timer.cancel()
            if !request.acknowledged { metrics.answered(after: request.start) }
            Self.answer(request.handler, message)
        case .frames(let batches):
            var byLoop: [ObjectIdentifier: [(NIOLoopBound<WebSocketTransportHandler>, [RelayedFrame])]] = [:]
            for batch in batches {
                guard let handler = webSockets[batch.id]?.handler else { continue }
                byLoop[ObjectIdentifier(handler.eventLoop), default: []].append((handler, batch.frames))
            }
            for writes in byLoop.values {
                writes[0].0.eventLoop.execute {
                    for (handler, frames) in writes { handler.value.writeFrames(frames.map(\.message)) }
                }
            }
        case .closeWebSocket(let id):
            guard let handler = removeWebSocket(id) else { return }
            handler.eventLoop.execute { handler.value.close() }
        case .readWebSocket(let id, let paused):
            guard let handler = webSockets[id]?.handler else { return }
            handler.eventLoop.execute { paused ? handler.value.pauseReading() : handler.value.resumeReading() }
        }
    }

    private func shard(owning sid: String) -> NIOLoopBound<EngineIOServer>? {
        guard !shards.isEmpty, let index = LoopShard.index(of: sid, count: shards.count) else { return nil }
        return shards[index]
    }
}

/// On the owner's shard: a relayed request, answered over the bus.
final class RemoteExchange: RelayExchange {
    let id: UInt64
    let node: RelayNode
    private unowned let server: EngineIOServer
    var session: EngineIOSession?
    /// Whether an answer went out; a request not answered at once is reported "held".
    private(set) var isAnswered = false

    init(id: UInt64, node: RelayNode, server: EngineIOServer) {
        self.id = id
        self.node = node
        self.server = server
    }

    func respondToPoll(with messages: [EngineIOMessage]) {
        let version = session?.version ?? .v4
        let body: ByteBuffer
        var binary = false
        if case .v3(let supportsBinary) = version {
            (body, binary) = EngineIOv3Payload.encode(messages, supportsBinary: supportsBinary)
        } else {
            let payload = EngineIOMessage.pollingPayload(messages)
            var joined = ByteBuffer()
            joined.reserveCapacity(payload.length)
            for part in payload.parts { joined.writeImmutableBuffer(part) }
            body = joined
        }
        answer(.pollAnswer(id: id, body: body, binary: binary))
    }

    func respondToPost(_ error: EngineIOError?) {
        answer(.postAnswer(id: id, error: error?.rawValue))
    }

    func respond(_ error: EngineIOError) {
        answer(.refused(id: id, error: error.rawValue))
    }

    /// Tells the sender the request waits, unless it was answered.
    func reportHeld() {
        guard !isAnswered else { return }
        send(.held(id: id))
    }

    private func answer(_ message: SessionRelayMessage) {
        guard !isAnswered else { return }
        isAnswered = true
        session = nil
        server.forgetRemote(self)
        server.sendToNode(message, to: node)
    }

    private func send(_ message: SessionRelayMessage) {
        server.sendToNode(message, to: node)
    }
}

/// On the owner's shard: the WebSocket of a session whose connection another node serves.
///
/// The choice for the upgrade of a relayed session: the WebSocket stays on the node that took
/// it, and the owner keeps the session and relays its frames, as socket.io-cluster-engine does
/// once a session's Socket.IO connection exists. Moving the session to the WebSocket's node
/// instead would move its Socket.IO sockets, rooms, pending acks and backend state too, or
/// (cluster-engine's other case) hold back every polling client's Socket.IO connection for a
/// while in case an upgrade comes. The cost: each message to or from such a client crosses
/// Redis, one more publish and delivery per message, batched per node once per loop round
/// (a broadcast reaching many of them is one Redis message per node), and about a Redis
/// round trip of latency. With round-robin balancing and `n` nodes, `(n-1)/n` of the clients
/// that start on polling and upgrade are relayed for their session's life; clients that
/// connect with `transports: ["websocket"]` never are.
final class RemoteWebSocket: WebSocketTransport {
    let id: UInt64
    let node: RelayNode
    private unowned let server: EngineIOServer
    var session: EngineIOSession?
    private var remoteIsWritable = true
    private var remoteBufferedBytes = 0
    private var isClosed = false

    init(id: UInt64, node: RelayNode, server: EngineIOServer) {
        self.id = id
        self.node = node
        self.server = server
    }

    func write(_ messages: ArraySlice<EngineIOMessage>) {
        guard !isClosed else { return }
        server.remoteWrite(RelayedFrames(id: id, frames: messages.map(RelayedFrame.init)), to: node)
    }

    func write(_ message: EngineIOMessage) {
        guard !isClosed else { return }
        server.remoteWrite(RelayedFrames(id: id, frames: [RelayedFrame(message)]), to: node)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        session = nil
        server.flushRemoteWrites()
        server.forgetRemote(self)
        server.sendToNode(.closeWebSocket(id: id), to: node)
    }

    func pauseReading() {
        server.sendToNode(.readWebSocket(id: id, paused: true), to: node)
    }

    func resumeReading() {
        server.sendToNode(.readWebSocket(id: id, paused: false), to: node)
    }

    var bufferedBytes: Int { remoteBufferedBytes }

    func isBuffering(moreThan limit: Int) -> Bool {
        if limit >= 64 * 1024, remoteIsWritable { return false }
        return remoteBufferedBytes > limit
    }

    func report(isWritable: Bool, bufferedBytes: Int) {
        remoteIsWritable = isWritable
        remoteBufferedBytes = bufferedBytes
    }
}

/// On the node serving the connection: a WebSocket of a session of another node.
final class NodeSessionLink: SessionLink {
    let version: EngineIOProtocolVersion
    private let id: UInt64
    private let sid: String
    private let owner: RelayNode
    private let relay: NIOLoopBound<NodeRelay>

    init(id: UInt64, sid: String, owner: RelayNode, relay: NIOLoopBound<NodeRelay>, version: EngineIOProtocolVersion) {
        self.id = id
        self.sid = sid
        self.owner = owner
        self.relay = relay
        self.version = version
    }

    func open(handler: NIOLoopBound<WebSocketTransportHandler>) {
        let relay = self.relay, id = self.id, sid = self.sid, owner = self.owner
        relay.eventLoop.execute { relay.value.relayUpgrade(id: id, sid: sid, to: owner, handler: handler) }
    }

    func received(_ packet: EngineIOPacket?) {
        forward(.packets(id: id, sid: sid, [RelayedFrame(packet)]))
    }

    func closed() {
        forward(.webSocketClosed(id: id, sid: sid, failed: false))
    }

    func failed() {
        forward(.webSocketClosed(id: id, sid: sid, failed: true))
    }

    func report(isWritable: Bool, bufferedBytes: Int) {
        forward(.webSocketReport(id: id, sid: sid, writable: isWritable, bufferedBytes: bufferedBytes))
    }

    private func forward(_ message: SessionRelayMessage) {
        let relay = self.relay, owner = self.owner
        relay.eventLoop.execute { relay.value.forward(message, to: owner) }
    }
}

/// What a shard keeps to relay to and serve other nodes.
struct NodeRelayState {
    let relay: NIOLoopBound<NodeRelay>
    let node: RelayNode
    /// This shard's ids: the counter times the shard count plus the shard's index, unique on the node.
    private var nextID: UInt64 = 0
    let shard: LoopShard
    /// Requests and WebSockets of this shard's sessions served by other nodes.
    var exchanges: [RemoteKey: RemoteExchange] = [:]
    var webSockets: [RemoteKey: RemoteWebSocket] = [:]
    /// Frames for other nodes' WebSockets, handed to the relay at the end of the round.
    var writes: [RelayNode: [RelayedFrames]] = [:]

    init(relay: NIOLoopBound<NodeRelay>, node: RelayNode, shard: LoopShard) {
        self.relay = relay
        self.node = node
        self.shard = shard
    }

    mutating func makeID() -> UInt64 {
        nextID += 1
        return nextID * UInt64(shard.count) + UInt64(shard.index)
    }
}

struct RemoteKey: Hashable {
    let node: RelayNode
    let id: UInt64
}

extension EngineIOServer {
    /// Makes this server relay requests of other nodes' sessions through `relay`, and make its
    /// sids name `node`.
    func join(relay: NIOLoopBound<NodeRelay>, node: RelayNode) {
        self.nodeRelay = NodeRelayState(relay: relay, node: node, shard: configuration.shard)
    }

    /// The node owning `sid`, when relaying is on and it is another one.
    func otherNode(owning sid: String) -> RelayNode? {
        guard let nodeRelay, let owner = RelayNode(owning: sid), owner != nodeRelay.node else { return nil }
        return owner
    }

    func makeRelayID() -> UInt64 {
        nodeRelay!.makeID()
    }

    var relayBound: NIOLoopBound<NodeRelay> { nodeRelay!.relay }

    /// A message of another node about one of this shard's sessions.
    func servedRemotely(_ message: SessionRelayMessage, from sender: RelayNode) {
        guard nodeRelay != nil else { return }
        switch message {
        case .request(let id, let sid, let transport, let method, let kind, let binary, let body):
            let exchange = RemoteExchange(id: id, node: sender, server: self)
            let requestKind: RelayedRequest.Kind = switch kind {
            case .poll: .poll
            case .post: .post(body)
            case .refusedPost: .refusedPost
            case .other: .other
            }
            let request = RelayedRequest(sid: sid, transport: transport, method: HTTPMethod(rawValue: method), kind: requestKind, binary: binary)
            nodeRelay?.exchanges[RemoteKey(node: sender, id: id)] = exchange
            serveRelayed(request, through: exchange)
            if case .post = kind, let session = exchange.session {
                session.finishPost(exchange, body: body, binary: binary)
            }
            // A refused POST was answered (413) by the sender, which waits for nothing.
            if exchange.isAnswered || kind == .refusedPost {
                forgetRemote(exchange)
            } else {
                exchange.reportHeld()
            }
        case .requestClosed(let id, _):
            guard let exchange = nodeRelay?.exchanges.removeValue(forKey: RemoteKey(node: sender, id: id)),
                  let session = exchange.session
            else { return }
            exchange.session = nil
            session.pollingConnectionDidClose(exchange)
        case .upgrade(let id, let sid):
            let webSocket = RemoteWebSocket(id: id, node: sender, server: self)
            guard let session = session(id: sid), session.canUpgrade else {
                logger.debug("relayed upgrade attempt for a closed, upgrading or upgraded session", metadata: ["sid": "\(sid)"])
                return webSocket.close()
            }
            nodeRelay?.webSockets[RemoteKey(node: sender, id: id)] = webSocket
            webSocket.session = session
            session.beginUpgrade(webSocket)
        case .packets(let id, _, let frames):
            for frame in frames {
                guard let webSocket = nodeRelay?.webSockets[RemoteKey(node: sender, id: id)], let session = webSocket.session else { return }
                session.webSocket(webSocket, didReceive: frame.packet)
            }
        case .webSocketClosed(let id, _, let failed):
            guard let webSocket = nodeRelay?.webSockets.removeValue(forKey: RemoteKey(node: sender, id: id)),
                  let session = webSocket.session
            else { return }
            webSocket.session = nil
            failed ? session.webSocketDidFail(webSocket) : session.webSocketDidClose(webSocket)
        case .webSocketReport(let id, _, let writable, let bufferedBytes):
            nodeRelay?.webSockets[RemoteKey(node: sender, id: id)]?.report(isWritable: writable, bufferedBytes: bufferedBytes)
        case .held, .pollAnswer, .postAnswer, .refused, .frames, .closeWebSocket, .readWebSocket:
            break
        }
    }

    func forgetRemote(_ exchange: RemoteExchange) {
        let key = RemoteKey(node: exchange.node, id: exchange.id)
        if nodeRelay?.exchanges[key] === exchange { nodeRelay?.exchanges[key] = nil }
    }

    func forgetRemote(_ webSocket: RemoteWebSocket) {
        let key = RemoteKey(node: webSocket.node, id: webSocket.id)
        if nodeRelay?.webSockets[key] === webSocket { nodeRelay?.webSockets[key] = nil }
    }

    /// Queues frames for a WebSocket of another node; they go to the relay at the end of the round.
    func remoteWrite(_ frames: RelayedFrames, to node: RelayNode) {
        guard nodeRelay != nil else { return }
        if nodeRelay!.writes.isEmpty {
            eventLoop.assumeIsolated().execute { self.flushRemoteWrites() }
        }
        nodeRelay!.writes[node, default: []].append(frames)
    }

    func flushRemoteWrites() {
        guard let state = nodeRelay, !state.writes.isEmpty else { return }
        let writes = state.writes
        nodeRelay!.writes = [:]
        let relay = state.relay
        relay.eventLoop.execute {
            for (node, frames) in writes { relay.value.send(frames, to: node) }
        }
    }

    func sendToNode(_ message: SessionRelayMessage, to node: RelayNode) {
        guard let relay = nodeRelay?.relay else { return }
        relay.eventLoop.execute { relay.value.send(message, to: node) }
    }
}
