import CPrefetch
import Logging
import NIOCore

/// One Engine.IO session: its transport state, its write buffer while polling, and its
/// heartbeat. Confined to the server's event loop.
public final class EngineIOSession {
    /// The session id ("sid"), 20 URL-safe characters.
    public let id: String
    public let handshake: EngineIOHandshake
    public private(set) var transport: EngineIOTransportKind
    /// The Engine.IO revision the client speaks.
    public let version: EngineIOProtocolVersion
    /// The upper layer's per-session state.
    public var userData: AnyObject?

    /// Strong on purpose: the server's table holds the session only while it is open, so the
    /// cycle ends when the session closes; handlers can still reach a server they outlive.
    let server: EngineIOServer
    private var state: State
    /// Whether `pauseReading()` is in force. Stored here, after `state`, where it fills the
    /// state's padding: stored properties are laid out in the order written.
    public private(set) var isReadingPaused = false
    /// A POST whose packets or "ok" wait for `resumeReading()`. Outside `State` because it
    /// outlives an upgrade completed meanwhile.
    private var heldPost: HeldPost?
    /// This session's entry in the server's heartbeat queues, if it has one.
    var heartbeatSlot = EngineIOHeartbeat.Slot.none

    /// As large as its largest case, in every session: what polling needs lives behind a
    /// reference and the rare closing timer in a box, so a WebSocket session keeps 17 bytes
    /// here rather than 41 plus an outbox (and takes 120 bytes, a 128-byte block of malloc's,
    /// not 161, a 176-byte one).
    private enum State {
        case polling(Polling)
        case websocket(WebSocketTransport)
        /// Closed by the server while no long-poll was pending: the next poll carries the
        /// rest of the outbox and the close packet, or the timer gives up.
        indirect case closing(timeout: Scheduled<Void>, polling: Polling)
        case closed
    }

    /// A class, so that the exchanges and the outbox are changed in place rather than stored
    /// back.
    private final class Polling {
        /// The GET waiting for packets.
        var pendingPoll: PollingExchange?
        /// The POST whose body is being received.
        var activePost: PollingExchange?
        var upgrade: Upgrade?
        /// Packets waiting for the next long-poll.
        var outbox: [EngineIOMessage] = []
        /// The polling size of the outbox's packets, separators left out; kept as packets come
        /// and go so `bufferedBytes` costs nothing per send.
        var outboxPacketBytes = 0

        var bufferedBytes: Int { self.outboxPacketBytes + max(self.outbox.count - 1, 0) }

        func takeOutbox() -> [EngineIOMessage] {
            let messages = self.outbox
            self.outbox = []
            self.outboxPacketBytes = 0
            return messages
        }
    }

    /// A POST body decoded but not fully delivered, or delivered while reading was paused.
    /// A class, like `Upgrade`: rare and short-lived, so every session keeps one reference
    /// rather than room for the whole value.
    private final class HeldPost {
        let post: PollingExchange
        var packets: ArraySlice<EngineIOPacket>
        /// Whether the body ended with a malformed packet: the session fails after the others.
        let malformed: Bool

        init(post: PollingExchange, packets: ArraySlice<EngineIOPacket>, malformed: Bool) {
            self.post = post
            self.packets = packets
            self.malformed = malformed
        }
    }

    /// A WebSocket opened with this session's sid, not yet confirmed with the "5" packet.
    private final class Upgrade {
        let webSocket: WebSocketTransport
        /// Whether "2probe" was answered; polls are then released with a noop at once.
        var probed = false
        let timeout: Scheduled<Void>

        init(webSocket: WebSocketTransport, timeout: Scheduled<Void>) {
            self.webSocket = webSocket
            self.timeout = timeout
        }
    }

    /// How long a server-closed polling session waits for a poll to deliver its close
    /// packet; the Node polling transport's `closeTimeout`.
    static let pollingCloseTimeout: TimeAmount = .seconds(30)

    init(server: EngineIOServer, id: String, handshake: EngineIOHandshake, version: EngineIOProtocolVersion = .v4) {
        self.server = server
        self.id = id
        self.handshake = handshake
        self.version = version
        self.transport = .polling
        self.state = .polling(Polling())
    }

    init(server: EngineIOServer, id: String, handshake: EngineIOHandshake, webSocket: WebSocketTransport,
         version: EngineIOProtocolVersion = .v4) {
        self.server = server
        self.id = id
        self.handshake = handshake
        self.version = version
        self.transport = .websocket
        self.state = .websocket(webSocket)
    }

    public var isOpen: Bool {
        switch self.state {
        case .polling, .websocket: true
        case .closing, .closed: false
        }
    }

    // MARK: - Flow control

    /// Stops taking input from this client until `resumeReading()`, so an upper layer that
    /// cannot deliver its events keeps its memory bounded. Idempotent: calls do not nest.
    ///
    /// - WebSocket: the connection's read requests are held back, so the socket is no longer
    ///   read and the kernel buffers push back on the client. Frames from bytes the channel had
    ///   already read (the last read event's, a few reads at most) wait in the transport handler.
    /// - Polling: the POST being received, or the next one, gets its "ok" only after
    ///   `resumeReading()`; a polling client sends one POST at a time, so it waits. If the
    ///   pause comes while a POST's packets are being delivered (from a delegate callback),
    ///   the packets of that body not yet delivered wait too.
    ///
    /// No message reaches the delegate while paused, and none is dropped: waiting ones are
    /// delivered in order on resume. The state outlives the upgrade to WebSocket; closing
    /// works as usual (waiting input is then discarded, and a waiting POST gets its "ok",
    /// like Node answering a POST for a closed socket). Heartbeat answers are input too: a
    /// client paused for longer than about pingInterval + pingTimeout is closed with "ping
    /// timeout", as in Node when a socket is paused.
    public func pauseReading() {
        guard !self.isReadingPaused else { return }
        self.isReadingPaused = true
        if case .websocket(let webSocket) = self.state {
            webSocket.pauseReading()
        }
    }

    /// Delivers the input that waited during `pauseReading()` and takes input again. A no-op
    /// when not paused. The delegate may pause again from the callbacks it gets meanwhile.
    public func resumeReading() {
        guard self.isReadingPaused else { return }
        self.isReadingPaused = false
        self.deliverHeldPost()
        if !self.isReadingPaused, case .websocket(let webSocket) = self.state {
            webSocket.resumeReading()
        }
    }

    /// Bytes queued for this client and not yet written to its socket: the polling payload
    /// waiting for the next long-poll, or on WebSocket the bytes the channel still buffers
    /// (written but not yet taken by the kernel). Cheap to read; nothing is tracked per send
    /// on WebSocket.
    public var bufferedBytes: Int {
        switch self.state {
        case .polling(let polling), .closing(_, let polling):
            polling.bufferedBytes
        case .websocket(let webSocket):
            webSocket.bufferedBytes
        case .closed:
            0
        }
    }

    /// Whether more than `limit` bytes wait for this client; cheaper than `bufferedBytes`.
    public func isBuffering(moreThan limit: Int) -> Bool {
        switch self.state {
        case .websocket(let webSocket):
            webSocket.isBuffering(moreThan: limit)
        case .polling, .closing, .closed:
            self.bufferedBytes > limit
        }
    }

    // MARK: - Sending

    /// Sends the messages unless more than `limit` bytes already wait for this client, and
    /// returns whether it sent them: `isBuffering(moreThan:)` then `send`, in one look at the
    /// transport, as a broadcast asks of each recipient.
    public func send(_ messages: [EngineIOMessage], unlessBufferingMoreThan limit: Int) -> Bool {
        if case .websocket(let webSocket) = self.state {
            return webSocket.write(messages[...], unlessBufferingMoreThan: limit)
        }
        guard self.bufferedBytes <= limit else { return false }
        self.send(messages[...])
        return true
    }

    public func send(_ message: EngineIOMessage) {
        self.send(CollectionOfOne(message))
    }

    /// Sends the messages back to back: in one polling payload, or in consecutive frames, so a
    /// packet's binary attachments follow it.
    public func send(_ messages: [EngineIOMessage]) {
        self.send(messages[...])
    }

    private func send(_ messages: some Collection<EngineIOMessage>) {
        switch self.state {
        case .polling(let polling):
            polling.outbox.append(contentsOf: messages)
            for message in messages {
                polling.outboxPacketBytes += message.pollingLength
            }
            if let poll = polling.pendingPoll {
                polling.pendingPoll = nil
                self.flushOutbox(of: polling, to: poll)
            }
        case .websocket(let webSocket):
            // The cast is decided at compile time once this is specialized for its callers.
            if let messages = messages as? ArraySlice<EngineIOMessage> {
                webSocket.write(messages)
            } else {
                for message in messages { webSocket.write(message) }
            }
        case .closing, .closed:
            self.log("dropping packets sent after close")
        }
    }

    /// Has the CPU load this session's WebSocket handler while other work runs.
    public func prefetchTransport() {
        if case .websocket(let webSocket) = self.state {
            sidecast_prefetch(Unmanaged<AnyObject>.passUnretained(webSocket).toOpaque())
        }
    }

    /// Has the CPU load this session's WebSocket channel while other work runs.
    public func prefetchChannel() {
        if case .websocket(let webSocket) = self.state {
            webSocket.prefetchChannel()
        }
    }

    /// Packets one poll response carries at most. python-engineio's client refuses a payload of
    /// more than 16 packets; the rest simply waits for the client's next poll, which comes at once.
    static let maxPacketsPerPoll = 16

    private func flushOutbox(of polling: Polling, to poll: PollingExchange, appending last: EngineIOMessage? = nil) {
        var messages: [EngineIOMessage]
        if last == nil, polling.outbox.count > Self.maxPacketsPerPoll {
            messages = Array(polling.outbox.prefix(Self.maxPacketsPerPoll))
            polling.outbox.removeFirst(Self.maxPacketsPerPoll)
            for message in messages {
                polling.outboxPacketBytes -= message.pollingLength
            }
        } else {
            messages = polling.takeOutbox()
        }
        if let last { messages.append(last) }
        self.log("flushing \(messages.count) packet(s) to polling")
        poll.respondToPoll(with: messages)
    }

    // MARK: - Lifecycle

    /// Sends the open packet and starts the heartbeat.
    func open(upgrades: [EngineIOTransportKind]) {
        let config = self.server.configuration
        let upgradeList = upgrades.map { "\"\($0.rawValue)\"" }.joined(separator: ",")
        let json = #"{"sid":"\#(self.id)","upgrades":[\#(upgradeList)],"pingInterval":\#(config.pingInterval.nanoseconds / 1_000_000),"pingTimeout":\#(config.pingTimeout.nanoseconds / 1_000_000),"maxPayload":\#(config.maxPayload)}"#
        self.send(EngineIOMessage.packet(.open, json))
        if self.version == .v4 {
            self.schedulePing()
        } else {
            // In v3 the client pings and the server answers.
            self.server.heartbeat.expectClientPing(from: self)
        }
    }

    /// Closes the session from the server side. The delegate is told at once (if the session
    /// was open); the client gets the packets already sent, then the close packet "1" when
    /// polling or a close frame on WebSocket.
    public func close(reason: EngineIOCloseReason = .forcedClose) {
        guard case .polling(let polling) = self.state, polling.pendingPoll == nil else {
            self.terminate(reason, clientClosed: false)
            return
        }
        self.cancelTimers(of: polling)
        let timeout = self.server.eventLoop.assumeIsolated().scheduleTask(in: Self.pollingCloseTimeout) { [weak self] in
            guard let self else { return }
            self.finishClosing()
        }
        self.state = .closing(timeout: timeout, polling: polling)
        self.answerHeldPost()
        self.log("closing; waiting for a poll to deliver the close packet")
        self.server.metrics.closed(self.transport, reason: reason)
        self.server.delegate?.session(self, didCloseWith: reason)
    }

    /// Ends the closing phase without a poll to deliver the close packet.
    func finishClosing() {
        guard case .closing(let timeout, let polling) = self.state else { return }
        timeout.cancel()
        self.state = .closed
        _ = polling.takeOutbox()
        self.server.remove(self)
    }

    /// Closes an open session: stops the timers, releases the transports, leaves the table,
    /// tells the delegate. A pending poll gets a noop when the client closed (as in Node's
    /// polling `onClose`), else the close packet.
    private func terminate(_ reason: EngineIOCloseReason, clientClosed: Bool) {
        let previous = self.state
        switch previous {
        case .polling(let polling):
            self.state = .closed
            self.cancelTimers(of: polling)
            _ = polling.takeOutbox()
            polling.pendingPoll?.respondToPoll(with: [clientClosed ? .noop : .close])
        case .websocket(let webSocket):
            self.state = .closed
            self.cancelHeartbeat()
            webSocket.close()
        case .closing, .closed:
            return
        }
        self.answerHeldPost()
        self.server.remove(self)
        let level: Logger.Level = reason == .parseError || reason == .transportError ? .info : .debug
        self.server.logger.log(level: level, "session closed", metadata: ["sid": "\(self.id)", "reason": "\(reason.rawValue)"])
        self.server.metrics.closed(self.transport, reason: reason)
        self.server.delegate?.session(self, didCloseWith: reason)
    }

    private func cancelTimers(of polling: Polling) {
        self.cancelHeartbeat()
        if let upgrade = polling.upgrade {
            upgrade.timeout.cancel()
            upgrade.webSocket.close()
        }
    }

    // MARK: - Heartbeat

    private func schedulePing() {
        self.server.heartbeat.schedulePing(for: self)
    }

    /// The ping interval is over: sends the ping. Returns whether the session now waits for
    /// the pong.
    func heartbeatDidSendPing() -> Bool {
        guard self.isOpen else { return false }
        self.log("sending ping")
        self.send(EngineIOMessage.ping)
        return true
    }

    func heartbeatDidTimeOut() {
        self.terminate(.pingTimeout, clientClosed: false)
    }

    private func cancelHeartbeat() {
        self.server.heartbeat.cancel(self)
    }

    // MARK: - Inbound packets

    /// A packet from the session's current transport. Only the pong "3" counts as a heartbeat
    /// answer, as in the Node server; a ping from a v4 client is a protocol error. In v3 the
    /// heartbeat runs the other way: the client's ping is answered with a pong, and a pong
    /// from the client is the error.
    private func handle(_ packet: EngineIOPacket) {
        switch packet {
        case .pong where self.version == .v4:
            self.log("got pong")
            self.schedulePing()
        case .ping where self.version != .v4:
            self.log("got ping")
            self.server.heartbeat.expectClientPing(from: self)
            self.send(EngineIOMessage.pong)
        case .text(let payload):
            self.log("got message of \(payload.readableBytes) bytes")
            self.server.delegate?.session(self, didReceiveText: payload)
        case .binary(let data):
            self.log("got binary message of \(data.readableBytes) bytes")
            self.server.delegate?.session(self, didReceiveBinary: data)
        case .close:
            self.log("got close packet")
            self.terminate(.transportClose, clientClosed: true)
        case .ping, .pong:
            self.log("invalid heartbeat direction")
            self.terminate(.transportError, clientClosed: false)
        case .open, .upgrade, .noop:
            self.log("ignoring unexpected packet")
        }
    }

    // MARK: - Polling transport

    /// A long-poll GET. Returns the error to answer it with, if any.
    func handlePoll(_ poll: PollingExchange) -> EngineIOError? {
        switch self.state {
        case .polling(let polling):
            if polling.pendingPoll != nil {
                self.log("poll overlap from client")
                self.terminate(.transportError, clientClosed: false)
                return .badRequest
            }
            if !polling.outbox.isEmpty {
                self.flushOutbox(of: polling, to: poll)
            } else if polling.upgrade?.probed == true {
                poll.respondToPoll(with: [.noop])
            } else {
                polling.pendingPoll = poll
            }
            return nil
        case .closing(let timeout, let polling):
            timeout.cancel()
            self.state = .closed
            self.server.remove(self)
            self.flushOutbox(of: polling, to: poll, appending: .close)
            return nil
        case .websocket:
            return .badRequest
        case .closed:
            return .unknownSid
        }
    }

    /// The start of a POST. Returns the error to answer it with, if any.
    ///
    /// A client sends one POST at a time and waits for its "ok". One that sends another while
    /// the last is still being received, or still held unanswered because reading is paused,
    /// is closed with "transport error" (Node's "data request overlap from client"): a session
    /// holds at most one POST body, of at most `maxPayload` bytes.
    func beginPost(_ post: PollingExchange) -> EngineIOError? {
        switch self.state {
        case .polling(let polling):
            if polling.activePost != nil || self.heldPost != nil {
                self.server.logger.info("closing a polling client that sent a POST before the last was answered", metadata: [
                    "sid": "\(self.id)"
                ])
                self.server.metrics.refusedOverlappingPost()
                self.terminate(.transportError, clientClosed: false)
                return .badRequest
            }
            polling.activePost = post
            return nil
        case .closing:
            return nil
        case .websocket:
            return .badRequest
        case .closed:
            return .unknownSid
        }
    }

    /// The complete body of a POST begun with `beginPost`. The POST is answered through
    /// `respondToPost`: at once, or after `resumeReading()` when reading is paused. The
    /// packets before a malformed one are still handled.
    func finishPost(_ post: PollingExchange, body: ByteBuffer, binary: Bool) {
        switch self.state {
        case .polling(let polling) where polling.activePost === post:
            polling.activePost = nil
        case .closing:
            post.respondToPost(nil)
            return
        case .polling, .websocket, .closed:
            post.respondToPost(.badRequest)
            return
        }
        self.log("received polling payload of \(body.readableBytes) bytes")
        let (packets, malformed) = self.version == .v4
            ? EngineIOPacket.decodePayload(body) : EngineIOv3Payload.decode(body, binary: binary)
        self.heldPost = HeldPost(post: post, packets: packets[...], malformed: malformed)
        self.deliverHeldPost()
    }

    /// Hands the held POST's packets to the delegate while reading is not paused, then answers
    /// the POST. Taken out of `heldPost` while delivering, so a pause and resume from a
    /// callback does not deliver the same packets twice.
    private func deliverHeldPost() {
        guard let held = self.heldPost else { return }
        self.heldPost = nil
        while !self.isReadingPaused, self.isOpen, let packet = held.packets.popFirst() {
            self.handle(packet)
        }
        if self.isReadingPaused && self.isOpen {
            self.heldPost = held
        } else if held.malformed && self.isOpen {
            self.terminate(.parseError, clientClosed: false)
            held.post.respondToPost(.badRequest)
        } else {
            held.post.respondToPost(nil)
        }
    }

    /// Answers a held POST of a session that closes; its undelivered packets are dropped.
    private func answerHeldPost() {
        guard let held = self.heldPost else { return }
        self.heldPost = nil
        held.post.respondToPost(nil)
    }

    /// A POST that cannot be accepted (body over `maxPayload`, binary content type):
    /// "transport error", like the Node polling transport's `onError`.
    func rejectPost(_ post: PollingExchange) {
        if case .polling(let polling) = self.state, polling.activePost === post {
            polling.activePost = nil
        }
        self.terminate(.transportError, clientClosed: false)
    }

    /// The connection of a pending GET or an unfinished POST went away: "transport error",
    /// like Node's "poll connection closed prematurely".
    func pollingConnectionDidClose(_ handler: PollingExchange) {
        if let held = self.heldPost, held.post === handler {
            self.heldPost = nil
            self.log("held polling connection closed prematurely")
            self.terminate(.transportError, clientClosed: false)
            return
        }
        guard case .polling(let polling) = self.state else { return }
        if polling.pendingPoll === handler {
            polling.pendingPoll = nil
        } else if polling.activePost === handler {
            polling.activePost = nil
        } else {
            return
        }
        self.log("polling connection closed prematurely")
        self.terminate(.transportError, clientClosed: false)
    }

    // MARK: - WebSocket transport and upgrade

    /// Whether a WebSocket may take over: the session polls and no upgrade is under way.
    var canUpgrade: Bool {
        if case .polling(let polling) = self.state, polling.upgrade == nil { return true }
        return false
    }

    func beginUpgrade(_ webSocket: WebSocketTransport) {
        guard case .polling(let polling) = self.state, polling.upgrade == nil else {
            webSocket.close()
            return
        }
        self.log("upgrade to websocket started")
        let timeout = self.server.eventLoop.assumeIsolated().scheduleTask(in: self.server.configuration.upgradeTimeout) {
            [weak self] in
            guard let self else { return }
            self.log("client did not complete upgrade - closing websocket")
            self.abandonUpgrade(of: webSocket)
        }
        polling.upgrade = Upgrade(webSocket: webSocket, timeout: timeout)
    }

    /// A packet from a WebSocket; nil for a malformed one.
    func webSocket(_ webSocket: WebSocketTransport, didReceive packet: EngineIOPacket?) {
        switch self.state {
        case .websocket(let current) where current === webSocket:
            guard let packet else {
                self.terminate(.parseError, clientClosed: false)
                return
            }
            self.handle(packet)
        case .polling(let polling) where polling.upgrade?.webSocket === webSocket:
            switch packet {
            case .ping(let payload) where EngineIOPacket.isProbe(payload):
                self.log("got probe ping, sending pong")
                webSocket.write(EngineIOMessage.probePong)
                polling.upgrade?.probed = true
                let poll = polling.pendingPoll
                polling.pendingPoll = nil
                poll?.respondToPoll(with: [.noop])
            case .upgrade:
                self.log("got upgrade packet - upgrading")
                polling.upgrade?.timeout.cancel()
                self.state = .websocket(webSocket)
                self.transport = .websocket
                self.server.metrics.upgraded()
                if self.isReadingPaused {
                    webSocket.pauseReading()
                }
                polling.pendingPoll?.respondToPoll(with: [.noop])
                if !polling.outbox.isEmpty {
                    webSocket.write(polling.takeOutbox()[...])
                }
            default:
                self.abandonUpgrade(of: webSocket)
            }
        default:
            webSocket.close()
        }
    }

    func webSocketDidClose(_ webSocket: WebSocketTransport) {
        switch self.state {
        case .websocket(let current) where current === webSocket:
            self.terminate(.transportClose, clientClosed: true)
        case .polling(let polling) where polling.upgrade?.webSocket === webSocket:
            polling.upgrade?.timeout.cancel()
            polling.upgrade = nil
        default:
            break
        }
    }

    func webSocketDidFail(_ webSocket: WebSocketTransport) {
        if case .websocket(let current) = self.state, current === webSocket {
            self.terminate(.transportError, clientClosed: false)
        } else {
            self.abandonUpgrade(of: webSocket)
        }
    }

    private func abandonUpgrade(of webSocket: WebSocketTransport) {
        if case .polling(let polling) = self.state, let upgrade = polling.upgrade, upgrade.webSocket === webSocket {
            upgrade.timeout.cancel()
            polling.upgrade = nil
        }
        webSocket.close()
    }

    private func log(_ message: @autoclosure () -> Logger.Message) {
        self.server.logger.debug(message(), metadata: ["sid": "\(self.id)"])
    }
}
