import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Serves the HTTP side of Engine.IO on one connection: handshakes, long-poll GETs, POSTed
/// payloads, CORS preflights and errors. Requests come one at a time (NIO's pipelining
/// handler holds back the next request until the response is written), so a keep-alive
/// connection can carry any number of polls. Removed from the pipeline when the connection
/// is upgraded to WebSocket.
final class EngineIOHTTPHandler: ChannelInboundHandler, RemovableChannelHandler, PollingExchange {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// The answer was decided from the head; it is sent once the request is complete.
        case answerAtEnd(Answer)
        case handshake(HTTPRequestHead, EngineIOProtocolVersion)
        case poll(EngineIOSession)
        case post(EngineIOSession, body: ByteBuffer, binary: Bool)
        /// A POST was refused before its end (413): the rest of its body is dropped.
        case discardingBody
        /// A GET waits for the session to send packets.
        case awaitingPoll(EngineIOSession)
        /// A POST's body went to the session, which answers it now or, if its reading is
        /// paused, later.
        case awaitingPostAnswer(EngineIOSession)
        /// A request for another shard's session, being read to its end.
        case relaying(RelayLink, RelayedRequest)
        /// The request went to its session's shard, whose answer comes back here.
        case awaitingRelay(RelayLink)
        /// A request for another node's session, being read to its end.
        case relayingToNode(RelayNode, RelayedRequest)
        /// The request went to its session's node, whose answer comes back here (`relayAnswered`).
        case awaitingNode(id: UInt64)
    }

    private enum Answer {
        case error(EngineIOError)
        case notFound
        case preflight(HTTPHeaders)
        case serviceUnavailable
    }

    private let server: EngineIOServer
    private var context: ChannelHandlerContext?
    private var state: State = .idle
    private var keepAlive = true
    private var version = HTTPVersion.http1_1
    /// CORS headers for the request being served.
    private var corsHeaders = HTTPHeaders()
    /// The coding its Accept-Encoding prefers, when `--http-compression` is on.
    private var acceptedEncoding: HTTPCompression.Encoding?

    init(server: EngineIOServer) {
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.requestHead(head)
        case .body(let chunk):
            self.requestBody(chunk)
        case .end:
            self.requestEnd()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch self.state {
        case .awaitingPoll(let session), .post(let session, _, _), .awaitingPostAnswer(let session):
            self.state = .idle
            session.pollingConnectionDidClose(self)
        case .awaitingRelay(let link):
            self.state = .idle
            link.connectionClosed()
        case .awaitingNode(let id):
            self.state = .idle
            let relay = self.server.relayBound
            relay.eventLoop.execute { relay.value.cancel(id) }
        case .idle, .answerAtEnd, .handshake, .poll, .discardingBody, .relaying, .relayingToNode:
            break
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A WebSocket request refused in `shouldUpgrade` is still delivered here and answered
        // with its Engine.IO error; NIO's report of the refusal is expected, not a fault.
        if error is NIOWebSocketUpgradeError { return }
        self.server.logger.debug("HTTP connection error", metadata: ["error": "\(error)"])
        context.fireErrorCaught(error)
    }

    // MARK: - Request parts

    private func requestHead(_ head: HTTPRequestHead) {
        self.version = head.version
        self.keepAlive = head.isKeepAlive
        self.corsHeaders = HTTPHeaders()
        self.acceptedEncoding = self.server.compressors.http == nil ? nil : HTTPCompression.encoding(accepting: head.headers)
        self.server.logger.debug("handling HTTP request", metadata: ["method": "\(head.method.rawValue)", "uri": "\(head.uri)"])

        guard head.uri.hasPrefix(self.server.configuration.path) else {
            self.state = .answerAtEnd(.notFound)
            return
        }
        self.corsHeaders = self.server.cors.responseHeaders(for: head.headers)
        if self.server.cors.isEnabled && head.method == .OPTIONS {
            self.state = .answerAtEnd(.preflight(self.server.cors.preflightHeaders(for: head.headers)))
            return
        }

        // An upgrade request reaches this handler only when NIO did not upgrade: it was refused
        // by `shouldUpgrade`, or it is not the first request of its connection.
        let isUpgrade = head.headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }
        if isUpgrade {
            // NIO's HTTP decoder parses nothing after an upgrade request, so the connection
            // cannot carry another request: close it after the answer, as Node's `abortUpgrade`.
            self.keepAlive = false
        }
        // Every request, not only handshakes: a page from a foreign origin must not poll or
        // post in a session opened elsewhere either.
        guard self.server.allowsOrigin(of: head) else {
            self.server.didRefuseOrigin(of: head)
            self.state = .answerAtEnd(.error(.forbiddenOrigin))
            return
        }
        if !isUpgrade {
            self.server.noteCrossOriginPoll(head)
        }
        let query = EngineIORequestURI(head.uri).query
        switch self.server.route(method: head.method, query: query, isUpgrade: isUpgrade) {
        case .failure(let error):
            self.state = .answerAtEnd(.error(error))
        case .success(.handshake(_, let version)):
            if self.server.isShuttingDown {
                self.state = .answerAtEnd(.serviceUnavailable)
            } else if isUpgrade {
                self.state = .answerAtEnd(.error(.badRequest))
            } else {
                self.state = .handshake(head, version)
            }
        case .success(.otherNode(let owner)):
            // As for another shard's session: an upgrade here is not the first request of its
            // connection.
            if isUpgrade {
                self.state = .answerAtEnd(.error(.badRequest))
                return
            }
            self.state = .relayingToNode(owner, RelayedRequest(head, query: query))
        case .success(.otherShard(let owner)):
            // An upgrade reaches this handler only when it is not the first request of its
            // connection, which NIO's decoder cannot carry on after.
            if isUpgrade {
                self.state = .answerAtEnd(.error(.badRequest))
                return
            }
            let request = RelayedRequest(head, query: query)
            let link = RelayLink(owner: owner)
            self.state = .relaying(link, request)
            // The session learns of a POST at its start, as for one of its own connections, so
            // a second POST while this one's body is still coming is refused.
            if case .post = request.kind {
                link.beginPost(request, answeringTo: NIOLoopBound(self, eventLoop: self.server.eventLoop))
            }
        case .success(.session(let session)):
            if isUpgrade {
                self.state = .answerAtEnd(.error(.badRequest))
                return
            }
            switch head.method {
            case .GET:
                self.state = .poll(session)
            case .POST:
                // Binary payloads are base64 text in v4: an octet-stream body is refused. A v3
                // client may send the XHR2 binary payload instead.
                let isBinary = head.headers.first(name: "content-type") == "application/octet-stream"
                if isBinary && session.version == .v4 {
                    session.rejectPost(self)
                    self.state = .answerAtEnd(.error(.badRequest))
                } else if let error = session.beginPost(self) {
                    self.state = .answerAtEnd(.error(error))
                } else {
                    self.state = .post(session, body: ByteBuffer(), binary: isBinary)
                }
            default:
                self.state = .answerAtEnd(.error(.badRequest))
            }
        }
    }

    private func requestBody(_ chunk: ByteBuffer) {
        if case .relaying(let link, var request) = self.state {
            return self.relayBody(chunk, link: link, request: &request)
        }
        if case .relayingToNode(let owner, var request) = self.state {
            return self.relayBody(chunk, to: owner, request: &request)
        }
        guard case .post(let session, var body, let binary) = self.state else { return }
        // Leave the state while appending so the buffer is not shared and copied.
        self.state = .discardingBody
        guard body.readableBytes + chunk.readableBytes <= self.server.configuration.maxPayload else {
            self.server.logger.info("polling payload over maxPayload", metadata: ["sid": "\(session.id)"])
            self.keepAlive = false
            self.respond(status: .payloadTooLarge, headers: self.corsHeaders)
            session.rejectPost(self)
            return
        }
        if body.readableBytes == 0 {
            body = chunk
        } else {
            body.writeImmutableBuffer(chunk)
        }
        self.state = .post(session, body: body, binary: binary)
    }

    /// Adds a chunk to a relayed POST's body; past maxPayload the POST is refused here and the
    /// session's shard is told, as for a session of this shard.
    private func relayBody(_ chunk: ByteBuffer, link: RelayLink, request: inout RelayedRequest) {
        guard case .post(var body) = request.kind else { return }
        self.state = .discardingBody
        guard body.readableBytes + chunk.readableBytes <= self.server.configuration.maxPayload else {
            self.server.logger.info("polling payload over maxPayload", metadata: ["sid": "\(request.sid)"])
            self.keepAlive = false
            self.respond(status: .payloadTooLarge, headers: self.corsHeaders)
            request.kind = .refusedPost
            link.send(request, answeringTo: NIOLoopBound(self, eventLoop: self.server.eventLoop))
            return
        }
        if body.readableBytes == 0 {
            body = chunk
        } else {
            body.writeImmutableBuffer(chunk)
        }
        request.kind = .post(body)
        self.state = .relaying(link, request)
    }

    /// Adds a chunk to the body of a POST for another node's session; past maxPayload the POST
    /// is refused here, and the owner told, as it would have refused it.
    private func relayBody(_ chunk: ByteBuffer, to owner: RelayNode, request: inout RelayedRequest) {
        guard case .post(var body) = request.kind else { return }
        self.state = .discardingBody
        guard body.readableBytes + chunk.readableBytes <= self.server.configuration.maxPayload else {
            self.server.logger.info("polling payload over maxPayload", metadata: ["sid": "\(request.sid)"])
            self.keepAlive = false
            self.respond(status: .payloadTooLarge, headers: self.corsHeaders)
            let message = SessionRelayMessage.request(
                id: self.server.makeRelayID(), sid: request.sid, transport: request.transport, method: request.method.rawValue,
                kind: .refusedPost, binary: request.binary, body: ByteBuffer()
            )
            let relay = self.server.relayBound
            relay.eventLoop.execute { relay.value.notify(message, to: owner) }
            return
        }
        if body.readableBytes == 0 {
            body = chunk
        } else {
            body.writeImmutableBuffer(chunk)
        }
        request.kind = .post(body)
        self.state = .relayingToNode(owner, request)
    }

    /// Hands a request read to its end to the node owning its session.
    private func relay(_ request: RelayedRequest, to owner: RelayNode) {
        let id = self.server.makeRelayID()
        self.state = .awaitingNode(id: id)
        var body = ByteBuffer()
        let kind: RelayedRequestKind
        switch request.kind {
        case .poll: kind = .poll
        case .post(let posted): kind = .post; body = posted
        case .refusedPost: kind = .refusedPost
        case .other: kind = .other
        }
        let message = SessionRelayMessage.request(
            id: id, sid: request.sid, transport: request.transport, method: request.method.rawValue, kind: kind,
            binary: request.binary, body: body
        )
        let relay = self.server.relayBound
        let handler = NIOLoopBound(self, eventLoop: self.server.eventLoop)
        relay.eventLoop.execute {
            relay.value.relay(message, id: id, sid: request.sid, kind: kind, to: owner, answeringTo: handler)
        }
    }

    /// The owner's answer to a request relayed to another node.
    func relayAnswered(_ message: SessionRelayMessage) {
        guard case .awaitingNode = self.state else { return }
        switch message {
        case .pollAnswer(_, let body, let binary):
            self.state = .idle
            self.respondWithPayload([body], length: body.readableBytes,
                                    contentType: binary ? "application/octet-stream" : "text/plain; charset=UTF-8")
        case .postAnswer(_, let code):
            self.respondToPost(code.map { EngineIOError(rawValue: $0) ?? .badRequest })
        case .refused(_, let code):
            self.state = .idle
            self.respond(EngineIOError(rawValue: code) ?? .unknownSid)
        default:
            break
        }
    }

    private func requestEnd() {
        let state = self.state
        self.state = .idle
        switch state {
        case .relayingToNode(let owner, let request):
            self.relay(request, to: owner)
        case .relaying(let link, let request):
            self.state = .awaitingRelay(link)
            if case .post(let body) = request.kind {
                link.finishPost(body, binary: request.binary)
            } else {
                link.send(request, answeringTo: NIOLoopBound(self, eventLoop: self.server.eventLoop))
            }
        case .answerAtEnd(.error(let error)):
            self.respond(error)
        case .answerAtEnd(.notFound):
            self.respond(status: .notFound, headers: HTTPHeaders())
        case .answerAtEnd(.preflight(let headers)):
            self.respond(status: .noContent, headers: headers, contentLength: false)
        case .answerAtEnd(.serviceUnavailable):
            self.respond(status: .serviceUnavailable, headers: self.corsHeaders)
        case .handshake(let head, let version):
            self.server.openPollingSession(head: head, remoteAddress: self.context?.remoteAddress, version: version,
                                           firstPoll: self)
        case .poll(let session):
            self.startPoll(on: session)
        case .post(let session, let body, let binary):
            self.state = .awaitingPostAnswer(session)
            session.finishPost(self, body: body, binary: binary)
        case .idle, .discardingBody, .awaitingPoll, .awaitingPostAnswer, .awaitingRelay, .awaitingNode:
            break
        }
    }

    // MARK: - Polling

    /// Hands this request to the session as its long-poll; the session answers it now or later
    /// through `respondToPoll`.
    func startPoll(on session: EngineIOSession) {
        self.state = .awaitingPoll(session)
        if let error = session.handlePoll(self) {
            self.state = .idle
            self.respond(error)
        }
    }

    /// Answers the pending long-poll with one payload holding `messages`.
    func respondToPoll(with messages: [EngineIOMessage]) {
        guard case .awaitingPoll(let session) = self.state else { return }
        self.answerPoll(with: messages, version: session.version)
    }

    /// Answers the relayed long-poll with one payload holding `messages`, in the format of the
    /// session's protocol `version`.
    func respondToRelayedPoll(with messages: [EngineIOMessage], version: EngineIOProtocolVersion) {
        guard case .awaitingRelay = self.state else { return }
        self.answerPoll(with: messages, version: version)
    }

    private func answerPoll(with messages: [EngineIOMessage], version: EngineIOProtocolVersion) {
        self.state = .idle
        let payload: (parts: [ByteBuffer], length: Int)
        var contentType = "text/plain; charset=UTF-8"
        if case .v3(let supportsBinary) = version {
            let (body, binary) = EngineIOv3Payload.encode(messages, supportsBinary: supportsBinary)
            payload = ([body], body.readableBytes)
            if binary { contentType = "application/octet-stream" }
        } else {
            payload = EngineIOMessage.pollingPayload(messages)
        }
        self.respondWithPayload(payload.parts, length: payload.length, contentType: contentType)
    }

    /// Sends a long-poll's encoded payload, compressed when the request accepts it.
    private func respondWithPayload(_ parts: [ByteBuffer], length: Int, contentType: String) {
        let payload = (parts: parts, length: length)
        var headers = self.corsHeaders
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Cache-Control", value: "no-store")
        if let encoding = self.acceptedEncoding, let compression = self.server.compressors.http,
           let compressed = compression.compress(payload.parts, length: payload.length, as: encoding) {
            headers.add(name: "Content-Encoding", value: encoding.rawValue)
            self.respond(status: .ok, headers: headers, body: [compressed], length: compressed.readableBytes)
            return
        }
        self.respond(status: .ok, headers: headers, body: payload.parts, length: payload.length)
    }

    /// Answers the POST handed to the session with "ok", or with `error`.
    func respondToPost(_ error: EngineIOError?) {
        switch self.state {
        case .awaitingPostAnswer, .awaitingRelay, .awaitingNode: break
        default: return
        }
        self.state = .idle
        if let error {
            self.respond(error)
        } else {
            var headers = self.corsHeaders
            headers.add(name: "Content-Type", value: "text/html")
            headers.add(name: "Cache-Control", value: "no-store")
            self.respond(status: .ok, headers: headers, body: [ByteBuffer(string: "ok")], length: 2)
        }
    }

    /// Answers a relayed request that its session's shard refused before taking it; a POST may
    /// be refused while its body is still coming, which is then dropped.
    func respondToRelayed(_ error: EngineIOError) {
        switch self.state {
        case .awaitingRelay:
            self.state = .idle
        case .relaying:
            self.state = .discardingBody
            self.keepAlive = false
        default:
            return
        }
        self.respond(error)
    }

    // MARK: - Responses

    private func respond(_ error: EngineIOError) {
        self.server.logger.debug("request error", metadata: ["code": "\(error.rawValue)", "message": "\(error.message)"])
        var headers = self.corsHeaders
        headers.add(name: "Content-Type", value: "application/json")
        let body = ByteBuffer(string: error.body)
        self.respond(status: error.status, headers: headers, body: [body], length: body.readableBytes)
    }

    private func respond(status: HTTPResponseStatus, headers: HTTPHeaders, body: [ByteBuffer] = [], length: Int = 0,
                         contentLength: Bool = true) {
        guard let context = self.context else { return }
        var head = HTTPResponseHead(version: self.version, status: status, headers: headers)
        if contentLength {
            head.headers.add(name: "Content-Length", value: String(length))
        }
        if !self.keepAlive {
            head.headers.add(name: "Connection", value: "close")
        } else if self.version.major == 1 && self.version.minor == 0 {
            head.headers.add(name: "Connection", value: "keep-alive")
        }
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        for part in body {
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(part))), promise: nil)
        }
        if self.keepAlive {
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                loopBoundContext.value.close(promise: nil)
            }
        }
    }
}
