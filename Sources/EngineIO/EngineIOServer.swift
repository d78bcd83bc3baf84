import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Why a session ended, with the Node server's reason strings (Socket.IO passes them on as
/// disconnect reasons).
public enum EngineIOCloseReason: String, Sendable {
    case transportClose = "transport close"
    case transportError = "transport error"
    case pingTimeout = "ping timeout"
    case parseError = "parse error"
    case forcedClose = "forced close"
    case serverShuttingDown = "server shutting down"
}

/// Implemented by the Socket.IO layer. All calls happen on the server's event loop.
public protocol EngineIOServerDelegate: AnyObject {
    func sessionDidOpen(_ session: EngineIOSession)
    /// A text message; `text` is the payload after the "4" type digit, as bytes that should
    /// be UTF-8 (nothing here checks: Socket.IO's parser refuses invalid JSON text). A buffer,
    /// not a `String`, so the payload is parsed where it was read, uncopied.
    func session(_ session: EngineIOSession, didReceiveText text: ByteBuffer)
    func session(_ session: EngineIOSession, didReceiveBinary data: ByteBuffer)
    /// Called exactly once per session, after which the session sends nothing more.
    func session(_ session: EngineIOSession, didCloseWith reason: EngineIOCloseReason)
}

/// An Engine.IO v4 server: owns the session table, the configuration and the timers, and sets
/// up the HTTP/WebSocket handlers of accepted connections. Confined to one event loop: every
/// connection given to `configureChildChannel` must live on `eventLoop` (bootstrap it with a
/// one-loop group, or run one server per loop).
public final class EngineIOServer {
    public let configuration: EngineIOConfiguration
    public let eventLoop: EventLoop
    let logger: Logger
    let cors: CORSPolicy
    let compressors: EngineIOCompressors
    /// Held weakly: the Socket.IO layer owns the server, not the other way round.
    public weak var delegate: EngineIOServerDelegate?

    /// Sessions in the table, including ones closed by the server that still wait for a
    /// polling request to carry their close packet.
    private var sessions: [String: EngineIOSession] = [:]
    private(set) var isShuttingDown = false
    let metrics: EngineIOMetrics
    let heartbeat: EngineIOHeartbeat
    /// Every shard's server, by shard index, on a node of several loops; empty on one loop.
    var shards: [NIOLoopBound<EngineIOServer>] = []
    /// Frames for WebSockets relayed to other loops, waiting for the end of this loop's round.
    var relayedWrites: [RelayedWrite] = []
    /// With `--relay-sessions`: this node's tag and the requests and WebSockets relayed to and
    /// from other nodes.
    var nodeRelay: NodeRelayState?
    /// Clients cause the origin warnings at will: one line a minute for each kind, at most.
    private var warnings = WarningThrottle(interval: .seconds(60))

    public init(configuration: EngineIOConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.cors = CORSPolicy(origins: configuration.allowedOrigins)
        self.metrics = EngineIOMetrics(shard: configuration.shard)
        self.compressors = EngineIOCompressors(configuration: configuration)
        self.heartbeat = EngineIOHeartbeat(
            eventLoop: eventLoop, pingInterval: configuration.pingInterval, pingTimeout: configuration.pingTimeout
        )
    }

    /// WebSocket transports with written but unflushed frames, flushed together once the
    /// event loop has handled its current round of I/O.
    private var transportsAwaitingFlush: [WebSocketTransportHandler] = []
    /// Past this many waiting transports they are flushed at once: a broadcast to a big room
    /// goes out in batches, the first clients' frames on the wire while the rest are still
    /// being written, rather than every client waiting for the last one's write.
    static let flushBatchSize = 256

    func flushSoon(_ transport: WebSocketTransportHandler) {
        transportsAwaitingFlush.append(transport)
        if transportsAwaitingFlush.count == 1 {
            eventLoop.assumeIsolated().execute { self.flushWaitingTransports() }
        } else if transportsAwaitingFlush.count >= Self.flushBatchSize {
            flushWaitingTransports()
        }
    }

    private func flushWaitingTransports() {
        let waiting = transportsAwaitingFlush
        transportsAwaitingFlush.removeAll(keepingCapacity: true)
        for transport in waiting { transport.flushNow() }
    }

    public var sessionCount: Int { self.sessions.count }

    /// Adds the HTTP/WebSocket handlers to a freshly accepted child channel. Call it on
    /// `eventLoop`, synchronously, from the bootstrap's `childChannelInitializer`.
    ///
    /// - Parameter handlersAhead: whether the caller added handlers ahead of these (TLS), which
    ///   every byte written must pass. Without them, a WebSocket writes frames encoded in
    ///   advance straight to the channel.
    public func configureChildChannel(_ channel: Channel, handlersAhead: Bool = false) throws {
        precondition(channel.eventLoop === self.eventLoop, "Engine.IO connections must run on the server's event loop")
        let httpHandler = EngineIOHTTPHandler(server: self)
        var upgrade: NIOHTTPServerUpgradeConfiguration?
        if self.configuration.transports.contains(.websocket) {
            let server = NIOLoopBound(self, eventLoop: self.eventLoop)
            let boundHTTPHandler = NIOLoopBound(httpHandler, eventLoop: self.eventLoop)
            let upgrader = NIOWebSocketServerUpgrader(
                maxFrameSize: self.configuration.maxPayload,
                automaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    channel.eventLoop.makeSucceededFuture(server.value.upgradeResponseHeaders(for: head))
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        try server.value.didUpgrade(channel: channel, head: head, handlersAhead: handlersAhead)
                    }
                }
            )
            // Runs before the WebSocket handlers are added: the polling handler has no job left.
            upgrade = (upgraders: [upgrader], completionHandler: { context in
                context.pipeline.syncOperations.removeHandler(boundHTTPHandler.value, promise: nil)
            })
        }
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withServerUpgrade: upgrade)
        try channel.pipeline.syncOperations.addHandler(httpHandler)
    }

    /// Answers new handshakes with HTTP 503 from now on while open sessions carry on: the start
    /// of a drain, so a load balancer sends new clients elsewhere before the old ones are closed.
    public func refuseNewSessions() {
        self.isShuttingDown = true
    }

    /// Closes every session with `reason`: a pending long-poll gets the close packet "1", a
    /// WebSocket gets a close frame. Polling sessions with no request pending are dropped at
    /// once rather than kept until their next poll. From now on handshakes get HTTP 503.
    public func closeAll(reason: EngineIOCloseReason) {
        self.isShuttingDown = true
        for session in Array(self.sessions.values) {
            session.close(reason: reason)
            session.finishClosing()
        }
        self.heartbeat.stop()
    }

    // MARK: - Origins

    /// Whether a request carrying `head`'s headers may go on: one without `Origin` (not from a
    /// browser) always may, and so may one from sidecast's own origin, which is not cross-site
    /// and is what some non-browser clients send (Python's websocket-client sends the URL it
    /// connects to). Any other origin must be allowed.
    func allowsOrigin(of head: HTTPRequestHead) -> Bool {
        guard let origin = head.headers.first(name: "origin") else { return true }
        return self.configuration.allowedOrigins.allows(origin) || Self.isSameOrigin(origin, as: head)
    }

    /// Whether `origin` names the host and port the request was sent to. The scheme is not
    /// compared: behind a TLS proxy sidecast cannot know it.
    private static func isSameOrigin(_ origin: String, as head: HTTPRequestHead) -> Bool {
        guard let host = head.headers.first(name: "host"), let separator = origin.firstRange(of: "://") else {
            return false
        }
        return origin[separator.upperBound...].lowercased() == host.lowercased()
    }

    /// Counts a request refused with 403 for its origin, and says so in the log.
    func didRefuseOrigin(of head: HTTPRequestHead) {
        self.metrics.refusedForOrigin()
        let origin = head.headers.first(name: "origin") ?? ""
        self.throttledWarning("origin refused") { count in
            (
                "refused a request from origin \(origin), which is not an allowed origin; if its pages may connect, add it with --cors-origin",
                ["origin": "\(origin)", "refused": "\(count)"]
            )
        }
    }

    /// Logs a warning at most once a minute for `key` over the whole node: on a node of several
    /// loops the first shard's throttle counts for every shard.
    private func throttledWarning(_ key: String, _ message: @escaping @Sendable (_ count: Int) -> (Logger.Message, Logger.Metadata)) {
        if self.shards.count > 1, self.configuration.shard.index != 0 {
            let first = self.shards[0]
            first.eventLoop.execute { first.value.throttledWarning(key, message) }
            return
        }
        guard let count = self.warnings.record(key) else { return }
        let (text, metadata) = message(count)
        self.logger.warning(text, metadata: metadata)
    }

    /// With no allowed origins configured, a polling request from another origin gets no CORS
    /// headers, and the browser keeps its answer from the page, which only says "xhr poll
    /// error". Sidecast says why. The request is served as before: the browser refuses it.
    func noteCrossOriginPoll(_ head: HTTPRequestHead) {
        guard self.configuration.allowedOrigins.isEmpty, let origin = head.headers.first(name: "origin"),
              !Self.isSameOrigin(origin, as: head)
        else { return }
        self.throttledWarning("cross-origin poll") { count in
            (
                "polling from origin \(origin) gets no CORS headers, so the browser keeps the answers from its page (\"xhr poll error\"); to allow it, start sidecast with --cors-origin \(origin)",
                ["origin": "\(origin)", "requests": "\(count)"]
            )
        }
    }

    // MARK: - Routing

    /// What a valid request addresses.
    enum RequestTarget {
        case handshake(EngineIOTransportKind, EngineIOProtocolVersion)
        case session(EngineIOSession)
        /// A session of another shard of this node: the request is relayed to it.
        case otherShard(NIOLoopBound<EngineIOServer>)
        /// A session of another node: the request is relayed to it over the cluster's bus.
        case otherNode(RelayNode)
    }

    /// Validates a request like the Node server's `verify` followed by its handshake's
    /// protocol check, in the same order, so a request with several faults gets the same
    /// error code as from Node.
    func route(method: HTTPMethod, query: [String: String], isUpgrade: Bool) -> Result<RequestTarget, EngineIOError> {
        guard let name = query["transport"], let transport = EngineIOTransportKind(rawValue: name),
              self.configuration.transports.contains(transport)
        else {
            return .failure(.unknownTransport)
        }
        // An empty sid counts as absent, as in Node.
        if let sid = query["sid"], !sid.isEmpty {
            guard let session = self.sessions[sid] else {
                if let node = self.otherNode(owning: sid) { return .success(.otherNode(node)) }
                return self.otherShard(owning: sid).map { .success(.otherShard($0)) } ?? .failure(.unknownSid)
            }
            if !isUpgrade && session.transport != transport { return .failure(.badRequest) }
            return .success(.session(session))
        }
        guard method == .GET else { return .failure(.badHandshakeMethod) }
        if transport == .websocket && !isUpgrade { return .failure(.badRequest) }
        guard let version = self.protocolVersion(of: query) else { return .failure(.unsupportedProtocolVersion) }
        return .success(.handshake(transport, version))
    }

    /// The protocol a handshake asks for: "4", or with `allowEIO3` anything else is taken as
    /// v3, as the Node server's `verify` does.
    func protocolVersion(of query: [String: String]) -> EngineIOProtocolVersion? {
        if query["EIO"] == "4" { return .v4 }
        guard self.configuration.allowEIO3 else { return nil }
        return .v3(supportsBinary: (query["b64"] ?? "").isEmpty)
    }

    /// `shouldUpgrade` of the WebSocket upgrader: nil leaves the request to the HTTP handler,
    /// which answers it with the matching error.
    ///
    /// A request for a session that exists is upgraded even when that session is upgrading or
    /// upgraded already: `didUpgrade` then closes the new WebSocket and leaves the session
    /// alone, as Node's `onWebSocket` does.
    private func upgradeResponseHeaders(for head: HTTPRequestHead) -> HTTPHeaders? {
        guard !self.isShuttingDown, head.uri.hasPrefix(self.configuration.path), self.allowsOrigin(of: head) else {
            return nil
        }
        let uri = EngineIORequestURI(head.uri)
        guard uri.query["transport"] == EngineIOTransportKind.websocket.rawValue else { return nil }
        // A session of another shard is upgraded here too, and handed over in `didUpgrade`; that
        // shard closes the WebSocket if the session is gone, as for a session of this shard.
        // The answer must come now: NIO's frame decoder, replaced in `didUpgrade`, must not
        // have read bytes yet.
        switch self.route(method: head.method, query: uri.query, isUpgrade: true) {
        case .success:
            var headers = HTTPHeaders()
            if self.compressors.webSocket != nil, let agreement = PerMessageDeflate.negotiate(head.headers) {
                headers.add(name: "Sec-WebSocket-Extensions", value: agreement.responseHeader)
            }
            return headers
        case .failure:
            return nil
        }
    }

    private func didUpgrade(channel: Channel, head: HTTPRequestHead, handlersAhead: Bool) throws {
        let pipeline = channel.pipeline.syncOperations
        let nioReader = try pipeline.context(handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self)
        try pipeline.addHandler(WebSocketFrameReader(maxFrameSize: self.configuration.maxPayload), position: .after(nioReader.handler))
        pipeline.removeHandler(context: nioReader, promise: nil)
        let webSocket = WebSocketTransportHandler(server: self, handlersAhead: handlersAhead)
        // The same offer as `upgradeResponseHeaders` answered.
        webSocket.compression = self.compressors.webSocket == nil ? nil : PerMessageDeflate.negotiate(head.headers)?.clientContext
        try pipeline.addHandler(webSocket)
        let uri = EngineIORequestURI(head.uri)
        if let sid = uri.query["sid"], !sid.isEmpty {
            if self.sessions[sid] == nil, let node = self.otherNode(owning: sid) {
                // The WebSocket stays here and its frames are relayed (`RemoteWebSocket` says why).
                let link = NodeSessionLink(id: self.makeRelayID(), sid: sid, owner: node, relay: self.relayBound,
                                           version: self.protocolVersion(of: uri.query) ?? .v4)
                webSocket.relay = link
                link.open(handler: NIOLoopBound(webSocket, eventLoop: self.eventLoop))
                return
            }
            if self.sessions[sid] == nil, let owner = self.otherShard(owning: sid) {
                // The upgrade request names the session's protocol, as its handshake did.
                let link = RelayedSessionLink(owner: owner, version: self.protocolVersion(of: uri.query) ?? .v4)
                webSocket.relay = link
                link.adopt(sid: sid, handler: NIOLoopBound(webSocket, eventLoop: self.eventLoop))
                return
            }
            guard let session = self.sessions[sid], session.canUpgrade else {
                self.logger.debug("upgrade attempt for a closed, upgrading or upgraded session", metadata: ["sid": "\(sid)"])
                webSocket.close()
                return
            }
            webSocket.session = session
            session.beginUpgrade(webSocket)
        } else {
            let handshake = EngineIOHandshake(head: head, remoteAddress: channel.remoteAddress, secure: self.configuration.isSecure)
            let session = EngineIOSession(server: self, id: self.makeSessionID(), handshake: handshake, webSocket: webSocket,
                                          version: self.protocolVersion(of: uri.query) ?? .v4)
            webSocket.session = session
            self.register(session)
            self.delegate?.sessionDidOpen(session)
        }
    }

    // MARK: - Sessions

    /// Opens a polling session whose first long-poll is the handshake request itself, so the
    /// open packet is its answer; the delegate hears of the session after that, like Node's
    /// "connection" event.
    func openPollingSession(head: HTTPRequestHead, remoteAddress: SocketAddress?, version: EngineIOProtocolVersion,
                            firstPoll: EngineIOHTTPHandler) {
        let handshake = EngineIOHandshake(head: head, remoteAddress: remoteAddress, secure: self.configuration.isSecure)
        let session = EngineIOSession(server: self, id: self.makeSessionID(), handshake: handshake, version: version)
        self.register(session)
        firstPoll.startPoll(on: session)
        if session.isOpen {
            self.delegate?.sessionDidOpen(session)
        }
    }

    private func register(_ session: EngineIOSession) {
        self.sessions[session.id] = session
        self.metrics.opened(session.transport)
        self.logger.debug("session opened", metadata: ["sid": "\(session.id)", "transport": "\(session.transport.rawValue)"])
        session.open(upgrades: session.transport == .polling && self.configuration.transports.contains(.websocket)
                     ? [.websocket] : [])
    }

    /// The session `id` of this shard's table.
    func session(id: String) -> EngineIOSession? {
        self.sessions[id]
    }

    func remove(_ session: EngineIOSession) {
        if self.sessions[session.id] === session {
            self.sessions[session.id] = nil
        }
    }

    private func makeSessionID() -> String {
        while true {
            let id = RandomID.make(shard: self.configuration.shard, node: self.nodeRelay?.node)
            if self.sessions[id] == nil { return id }
        }
    }
}
