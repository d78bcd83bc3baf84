import NIOCore
import NIOHTTP1

/// One polling request as a session sees it: a long-poll GET it answers with packets, or a POST
/// it answers with "ok" or an error. Either the connection's own HTTP handler or, for a request
/// that reached another loop, the relay that hands the answer back to that loop.
protocol PollingExchange: AnyObject {
    func respondToPoll(with messages: [EngineIOMessage])
    func respondToPost(_ error: EngineIOError?)
}

/// A polling request served for a connection elsewhere: of another loop (`RelayedExchange`) or
/// of another node (`RemoteExchange`).
protocol RelayExchange: PollingExchange {
    /// The session the request went to, told if the connection closes while it waits.
    var session: EngineIOSession? { get set }
    /// An answer decided before the session took the request: an error status.
    func respond(_ error: EngineIOError)
}

/// A polling request of a session owned by another shard, read to its end on the connection's
/// loop and handed to the session's.
///
/// A polling client opens new connections at will, and each lands on whichever loop accepted
/// it; the sid says which shard owns the session (its first two characters, ``LoopShard``), so
/// the request goes there without a table shared by the loops. Moving the connection itself is
/// not possible under TLS and not offered by NIO, so the request is relayed: two hand-offs per
/// request, one each way.
struct RelayedRequest: Sendable {
    enum Kind: Sendable {
        /// A long-poll GET.
        case poll
        /// A POST, announced at its start (`RelayLink.beginPost`) and handed its whole body at
        /// its end (`RelayLink.finishPost`).
        case post(ByteBuffer)
        /// A POST the connection's loop refused and answered (body over maxPayload): the
        /// session fails, as for one of its own.
        case refusedPost
        /// Any other method: answered with "bad request" once the sid is known valid.
        case other
    }

    var sid: String
    var transport: String
    var method: HTTPMethod
    var kind: Kind
    /// Whether a POST's body is `application/octet-stream`: refused in v4, the XHR2 binary
    /// payload of a v3 client.
    var binary = false
}

extension RelayedRequest {
    /// A polling request for a session served elsewhere (another shard or node), read from its
    /// head; a POST's body is added at its end.
    init(_ head: HTTPRequestHead, query: [String: String]) {
        let kind: Kind = switch head.method {
        case .GET: .poll
        case .POST: .post(ByteBuffer())
        default: .other
        }
        self.init(sid: query["sid"] ?? "", transport: query["transport"] ?? "", method: head.method, kind: kind,
                  binary: head.headers.first(name: "content-type") == "application/octet-stream")
    }
}

/// The owning shard's side of a relayed request: the session answers it like a connection of
/// its own, and the answer is handed back to the connection's loop.
final class RelayedExchange: RelayExchange {
    private let handler: NIOLoopBound<EngineIOHTTPHandler>
    var session: EngineIOSession?

    init(handler: NIOLoopBound<EngineIOHTTPHandler>) {
        self.handler = handler
    }

    func respondToPoll(with messages: [EngineIOMessage]) {
        let version = session?.version ?? .v4
        session = nil
        let handler = self.handler
        handler.eventLoop.execute { handler.value.respondToRelayedPoll(with: messages, version: version) }
    }

    func respondToPost(_ error: EngineIOError?) {
        session = nil
        let handler = self.handler
        handler.eventLoop.execute { handler.value.respondToPost(error) }
    }

    func respond(_ error: EngineIOError) {
        session = nil
        let handler = self.handler
        handler.eventLoop.execute { handler.value.respondToRelayed(error) }
    }
}

/// What the connection's loop keeps of a request it relayed: where it went, and (filled in on
/// the owning loop) the exchange standing for it there.
struct RelayLink: Sendable {
    let owner: NIOLoopBound<EngineIOServer>
    let exchange: NIOLoopBoundBox<RelayedExchange?>

    init(owner: NIOLoopBound<EngineIOServer>) {
        self.owner = owner
        self.exchange = .makeEmptyBox(valueType: RelayedExchange.self, eventLoop: owner.eventLoop)
    }

    /// Hands the request to the owning shard; its answer comes back to `handler`.
    func send(_ request: RelayedRequest, answeringTo handler: NIOLoopBound<EngineIOHTTPHandler>) {
        let link = self
        owner.eventLoop.execute {
            let exchange = RelayedExchange(handler: handler)
            link.exchange.value = exchange
            link.owner.value.serveRelayed(request, through: exchange)
        }
    }

    /// Tells the session a POST starts; its body follows with `finishPost`.
    func beginPost(_ request: RelayedRequest, answeringTo handler: NIOLoopBound<EngineIOHTTPHandler>) {
        send(request, answeringTo: handler)
    }

    /// Hands the POST's whole body to the session that took its start.
    func finishPost(_ body: ByteBuffer, binary: Bool) {
        let link = self
        owner.eventLoop.execute {
            guard let exchange = link.exchange.value, let session = exchange.session else { return }
            session.finishPost(exchange, body: body, binary: binary)
        }
    }

    /// The connection closed before the answer came: the session hears it as a polling
    /// connection closed prematurely. Handed over after `send`, so it runs after it.
    func connectionClosed() {
        let link = self
        owner.eventLoop.execute {
            guard let exchange = link.exchange.value, let session = exchange.session else { return }
            exchange.session = nil
            session.pollingConnectionDidClose(exchange)
        }
    }
}

extension EngineIOServer {
    /// Makes this server one shard of a node: `shards[i]` is shard `i`'s server, this one at
    /// `configuration.shard.index`. Requests for another shard's sessions are relayed to it.
    /// Call on this server's loop before it takes connections.
    public func join(shards: [NIOLoopBound<EngineIOServer>]) {
        precondition(shards.count == configuration.shard.count, "one server per shard")
        precondition(shards[configuration.shard.index].eventLoop === eventLoop, "this server is its own shard")
        self.shards = shards
    }

    /// The server of the shard that owns `sid`, when it is another shard of this node.
    func otherShard(owning sid: String) -> NIOLoopBound<EngineIOServer>? {
        guard shards.count > 1, sid.utf8.count == RandomID.length, let index = LoopShard.index(of: sid, count: shards.count),
              index != configuration.shard.index
        else { return nil }
        return shards[index]
    }

    /// A request relayed from another loop, validated again here, where the session table is.
    func serveRelayed(_ request: RelayedRequest, through exchange: some RelayExchange) {
        let query = ["transport": request.transport, "sid": request.sid]
        switch route(method: request.method, query: query, isUpgrade: false) {
        case .failure(let error):
            exchange.respond(error)
        case .success(.handshake), .success(.otherShard), .success(.otherNode):
            // A sid that says this shard and is not in its table.
            exchange.respond(.unknownSid)
        case .success(.session(let session)):
            switch request.kind {
            case .poll:
                exchange.session = session
                if let error = session.handlePoll(exchange) { exchange.respond(error) }
            case .post:
                // Binary payloads are base64 text in v4, as for a POST of this shard.
                if request.binary && session.version == .v4 {
                    session.rejectPost(exchange)
                    return exchange.respond(.badRequest)
                }
                exchange.session = session
                if let error = session.beginPost(exchange) { exchange.respond(error) }
            case .refusedPost:
                session.rejectPost(exchange)
            case .other:
                exchange.respond(.badRequest)
            }
        }
    }
}

/// A session's WebSocket as the session drives it: the connection's own handler, or, for a
/// connection on another loop, the relay to that handler.
protocol WebSocketTransport: AnyObject {
    // Concrete types, not `some Collection`: a generic requirement called through the
    // existential runs unspecialized, and this is called once per delivery.
    func write(_ messages: ArraySlice<EngineIOMessage>)
    func write(_ message: EngineIOMessage)
    /// Sends a close frame after what was written before, then closes the connection.
    func close()
    func pauseReading()
    func resumeReading()
    var bufferedBytes: Int { get }
    func isBuffering(moreThan limit: Int) -> Bool
    /// `isBuffering(moreThan:)` and `write` in one call, as a broadcast asks of each recipient:
    /// writes unless more than `limit` bytes wait, and returns whether it wrote.
    func write(_ messages: ArraySlice<EngineIOMessage>, unlessBufferingMoreThan limit: Int) -> Bool
    /// Has the CPU load the channel a write goes to, if there is one here.
    func prefetchChannel()
}

extension WebSocketTransport {
    func prefetchChannel() {}

    func write(_ messages: ArraySlice<EngineIOMessage>, unlessBufferingMoreThan limit: Int) -> Bool {
        guard !self.isBuffering(moreThan: limit) else { return false }
        self.write(messages)
        return true
    }
}

/// On the session's shard: the WebSocket of a connection that another loop serves, a polling
/// session's upgrade that landed there.
///
/// Frames written are handed to the connection's loop once per round of this loop, all the
/// relayed connections of one loop in one hand-off (``EngineIOServer/relayWrite(_:to:)``): a
/// broadcast crosses once per loop, not once per client, and the `writev` to the client runs on
/// the connection's loop. What the client sends comes back one packet per hand-off, in order.
/// The backlog `--max-buffered` is checked against is the one the connection's loop last
/// reported: when it turned unwritable, after each flush while it stays so, and when it drains.
final class RelayedWebSocket: WebSocketTransport {
    let handler: NIOLoopBound<WebSocketTransportHandler>
    /// This shard's server, which batches the writes.
    private unowned let server: EngineIOServer
    var session: EngineIOSession?
    private var remoteIsWritable = true
    private var remoteBufferedBytes = 0
    private var isClosed = false

    init(handler: NIOLoopBound<WebSocketTransportHandler>, server: EngineIOServer) {
        self.handler = handler
        self.server = server
    }

    func write(_ messages: ArraySlice<EngineIOMessage>) {
        guard !isClosed else { return }
        server.relayWrite(Array(messages), to: handler)
    }

    func write(_ message: EngineIOMessage) {
        guard !isClosed else { return }
        server.relayWrite([message], to: handler)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        session = nil
        // What was written first goes first.
        server.flushRelayedWrites()
        let handler = self.handler
        handler.eventLoop.execute { handler.value.close() }
    }

    func pauseReading() {
        let handler = self.handler
        handler.eventLoop.execute { handler.value.pauseReading() }
    }

    func resumeReading() {
        let handler = self.handler
        handler.eventLoop.execute { handler.value.resumeReading() }
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

/// On the connection's loop: the session elsewhere that a WebSocket serves, the
/// `WebSocketTransportHandler`'s way to it.
protocol SessionLink: AnyObject {
    /// The session's protocol, for reading and writing its frames here.
    var version: EngineIOProtocolVersion { get }
    func received(_ packet: EngineIOPacket?)
    func closed()
    func failed()
    func report(isWritable: Bool, bufferedBytes: Int)
}

/// On the connection's loop: the session of another shard that a WebSocket serves.
final class RelayedSessionLink: SessionLink {
    /// The session's protocol, for reading and writing its frames here.
    let version: EngineIOProtocolVersion
    private let owner: NIOLoopBound<EngineIOServer>
    /// The session's side, made on the owning loop when the upgrade is handed over.
    private let transport: NIOLoopBoundBox<RelayedWebSocket?>

    init(owner: NIOLoopBound<EngineIOServer>, version: EngineIOProtocolVersion) {
        self.owner = owner
        self.version = version
        self.transport = .makeEmptyBox(valueType: RelayedWebSocket.self, eventLoop: owner.eventLoop)
    }

    /// Hands the upgraded connection to the session `sid` of the owning shard, which starts
    /// the upgrade, or closes the WebSocket when the session can't upgrade (closed, unknown,
    /// upgrading or upgraded already), as for a session of this shard.
    func adopt(sid: String, handler: NIOLoopBound<WebSocketTransportHandler>) {
        let owner = self.owner
        let transport = self.transport
        owner.eventLoop.execute {
            let server = owner.value
            let webSocket = RelayedWebSocket(handler: handler, server: server)
            transport.value = webSocket
            guard let session = server.session(id: sid), session.canUpgrade else {
                server.logger.debug("relayed upgrade attempt for a closed, upgrading or upgraded session", metadata: ["sid": "\(sid)"])
                return webSocket.close()
            }
            webSocket.session = session
            session.beginUpgrade(webSocket)
        }
    }

    func received(_ packet: EngineIOPacket?) {
        let transport = self.transport
        owner.eventLoop.execute {
            guard let webSocket = transport.value, let session = webSocket.session else { return }
            session.webSocket(webSocket, didReceive: packet)
        }
    }

    func closed() {
        let transport = self.transport
        owner.eventLoop.execute {
            guard let webSocket = transport.value, let session = webSocket.session else { return }
            webSocket.session = nil
            session.webSocketDidClose(webSocket)
        }
    }

    func failed() {
        let transport = self.transport
        owner.eventLoop.execute {
            guard let webSocket = transport.value, let session = webSocket.session else { return }
            webSocket.session = nil
            session.webSocketDidFail(webSocket)
        }
    }

    func report(isWritable: Bool, bufferedBytes: Int) {
        let transport = self.transport
        owner.eventLoop.execute { transport.value?.report(isWritable: isWritable, bufferedBytes: bufferedBytes) }
    }
}

extension EngineIOServer {
    /// Queues frames for a relayed WebSocket; every queued frame goes to its connection's loop
    /// at the end of this loop's round, one hand-off per loop.
    func relayWrite(_ messages: [EngineIOMessage], to handler: NIOLoopBound<WebSocketTransportHandler>) {
        relayedWrites.append((handler, messages))
        if relayedWrites.count == 1 {
            eventLoop.assumeIsolated().execute { self.flushRelayedWrites() }
        }
    }

    func flushRelayedWrites() {
        guard !relayedWrites.isEmpty else { return }
        var byLoop: [ObjectIdentifier: [RelayedWrite]] = [:]
        for write in relayedWrites {
            byLoop[ObjectIdentifier(write.handler.eventLoop), default: []].append(write)
        }
        relayedWrites.removeAll(keepingCapacity: true)
        for writes in byLoop.values {
            writes[0].handler.eventLoop.execute {
                for write in writes { write.handler.value.writeFrames(write.messages) }
            }
        }
    }
}

/// Frames for a relayed WebSocket, waiting for the end of the loop's round.
typealias RelayedWrite = (handler: NIOLoopBound<WebSocketTransportHandler>, messages: [EngineIOMessage])
