import Logging
import NIOCore

/// One Engine.IO session: its transport state, its write buffer while polling, and its
/// heartbeat. Confined to the server's event loop.
public final class EngineIOSession {
    /// The session id ("sid"), 20 URL-safe characters.
    public let id: String
    public let handshake: EngineIOHandshake
    public private(set) var transport: EngineIOTransportKind
    /// The upper layer's per-session state.
    public var userData: AnyObject?

    /// Strong on purpose: the server's table holds the session only while it is open, so the
    /// cycle ends when the session closes; handlers can still reach a server they outlive.
    let server: EngineIOServer
    private var state: State
    /// Packets waiting for the next long-poll; always empty on WebSocket.
    private var outbox: [EngineIOMessage] = []
    /// The next ping while waiting out the interval, the ping timeout after a ping was sent.
    private var heartbeatTimer: Scheduled<Void>?

    private enum State {
        case polling(Polling)
        case websocket(WebSocketTransportHandler)
        /// Closed by the server while no long-poll was pending: the next poll carries the
        /// rest of the outbox and the close packet, or the timer gives up.
        case closing(timeout: Scheduled<Void>)
        case closed
    }

    private struct Polling {
        /// The GET waiting for packets.
        var pendingPoll: EngineIOHTTPHandler?
        /// The POST whose body is being received.
        var activePost: EngineIOHTTPHandler?
        var upgrade: Upgrade?
    }

    /// A WebSocket opened with this session's sid, not yet confirmed with the "5" packet.
    private struct Upgrade {
        var webSocket: WebSocketTransportHandler
        /// Whether "2probe" was answered; polls are then released with a noop at once.
        var probed: Bool
        var timeout: Scheduled<Void>
    }

    /// How long a server-closed polling session waits for a poll to deliver its close
    /// packet; the Node polling transport's `closeTimeout`.
    static let pollingCloseTimeout: TimeAmount = .seconds(30)

    init(server: EngineIOServer, id: String, handshake: EngineIOHandshake) {
        self.server = server
        self.id = id
        self.handshake = handshake
        self.transport = .polling
        self.state = .polling(Polling())
    }

    init(server: EngineIOServer, id: String, handshake: EngineIOHandshake, webSocket: WebSocketTransportHandler) {
        self.server = server
        self.id = id
        self.handshake = handshake
        self.transport = .websocket
        self.state = .websocket(webSocket)
    }

    public var isOpen: Bool {
        switch self.state {
        case .polling, .websocket: true
        case .closing, .closed: false
        }
    }

    // MARK: - Sending

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
        case .polling(var polling):
            self.outbox.append(contentsOf: messages)
            if let poll = polling.pendingPoll {
                polling.pendingPoll = nil
                self.state = .polling(polling)
                self.flushOutbox(to: poll)
            }
        case .websocket(let webSocket):
            webSocket.write(messages)
        case .closing, .closed:
            self.log("dropping packets sent after close")
        }
    }

    private func flushOutbox(to poll: EngineIOHTTPHandler, appending last: EngineIOMessage? = nil) {
        var messages = self.outbox
        self.outbox = []
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
        self.schedulePing()
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
        self.state = .closing(timeout: timeout)
        self.log("closing; waiting for a poll to deliver the close packet")
        self.server.delegate?.session(self, didCloseWith: reason)
    }

    /// Ends the closing phase without a poll to deliver the close packet.
    func finishClosing() {
        guard case .closing(let timeout) = self.state else { return }
        timeout.cancel()
        self.state = .closed
        self.outbox = []
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
            self.outbox = []
            polling.pendingPoll?.respondToPoll(with: [clientClosed ? .noop : .close])
        case .websocket(let webSocket):
            self.state = .closed
            self.cancelHeartbeat()
            webSocket.close()
        case .closing, .closed:
            return
        }
        self.server.remove(self)
        let level: Logger.Level = reason == .parseError || reason == .transportError ? .info : .debug
        self.server.logger.log(level: level, "session closed", metadata: ["sid": "\(self.id)", "reason": "\(reason.rawValue)"])
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
        self.heartbeatTimer?.cancel()
        let loop = self.server.eventLoop.assumeIsolated()
        self.heartbeatTimer = loop.scheduleTask(in: self.server.configuration.pingInterval) { [weak self] in
            guard let self, self.isOpen else { return }
            self.log("sending ping")
            self.send(EngineIOMessage.ping)
            self.heartbeatTimer = loop.scheduleTask(in: self.server.configuration.pingTimeout) { [weak self] in
                guard let self else { return }
                self.terminate(.pingTimeout, clientClosed: false)
            }
        }
    }

    private func cancelHeartbeat() {
        self.heartbeatTimer?.cancel()
        self.heartbeatTimer = nil
    }

    // MARK: - Inbound packets

    /// A packet from the session's current transport. Only the pong "3" counts as a heartbeat
    /// answer, as in the Node server; a ping from a v4 client is a protocol error.
    private func handle(_ packet: EngineIOPacket) {
        switch packet {
        case .pong:
            self.log("got pong")
            self.schedulePing()
        case .text(let payload):
            self.log("got message of \(payload.readableBytes) bytes")
            self.server.delegate?.session(self, didReceiveText: String(buffer: payload))
        case .binary(let data):
            self.log("got binary message of \(data.readableBytes) bytes")
            self.server.delegate?.session(self, didReceiveBinary: data)
        case .close:
            self.log("got close packet")
            self.terminate(.transportClose, clientClosed: true)
        case .ping:
            self.log("invalid heartbeat direction")
            self.terminate(.transportError, clientClosed: false)
        case .open, .upgrade, .noop:
            self.log("ignoring unexpected packet")
        }
    }

    // MARK: - Polling transport

    /// A long-poll GET. Returns the error to answer it with, if any.
    func handlePoll(_ poll: EngineIOHTTPHandler) -> EngineIOError? {
        switch self.state {
        case .polling(var polling):
            if polling.pendingPoll != nil {
                self.log("poll overlap from client")
                self.terminate(.transportError, clientClosed: false)
                return .badRequest
            }
            if !self.outbox.isEmpty {
                self.flushOutbox(to: poll)
            } else if polling.upgrade?.probed == true {
                poll.respondToPoll(with: [.noop])
            } else {
                polling.pendingPoll = poll
                self.state = .polling(polling)
            }
            return nil
        case .closing(let timeout):
            timeout.cancel()
            self.state = .closed
            self.server.remove(self)
            self.flushOutbox(to: poll, appending: .close)
            return nil
        case .websocket:
            return .badRequest
        case .closed:
            return .unknownSid
        }
    }

    /// The start of a POST. Returns the error to answer it with, if any.
    func beginPost(_ post: EngineIOHTTPHandler) -> EngineIOError? {
        switch self.state {
        case .polling(var polling):
            if polling.activePost != nil {
                self.log("data request overlap from client")
                self.terminate(.transportError, clientClosed: false)
                return .badRequest
            }
            polling.activePost = post
            self.state = .polling(polling)
            return nil
        case .closing:
            return nil
        case .websocket:
            return .badRequest
        case .closed:
            return .unknownSid
        }
    }

    /// The complete body of a POST begun with `beginPost`. Returns the error to answer it
    /// with; the packets before a malformed one are still handled.
    func finishPost(_ post: EngineIOHTTPHandler, body: ByteBuffer) -> EngineIOError? {
        switch self.state {
        case .polling(var polling) where polling.activePost === post:
            polling.activePost = nil
            self.state = .polling(polling)
        case .closing:
            return nil
        case .polling, .websocket, .closed:
            return .badRequest
        }
        self.log("received polling payload of \(body.readableBytes) bytes")
        let (packets, malformed) = EngineIOPacket.decodePayload(body)
        for packet in packets where self.isOpen {
            self.handle(packet)
        }
        if malformed && self.isOpen {
            self.terminate(.parseError, clientClosed: false)
            return .badRequest
        }
        return nil
    }

    /// A POST that cannot be accepted (body over `maxPayload`, binary content type):
    /// "transport error", like the Node polling transport's `onError`.
    func rejectPost(_ post: EngineIOHTTPHandler) {
        if case .polling(var polling) = self.state, polling.activePost === post {
            polling.activePost = nil
            self.state = .polling(polling)
        }
        self.terminate(.transportError, clientClosed: false)
    }

    /// The connection of a pending GET or an unfinished POST went away: "transport error",
    /// like Node's "poll connection closed prematurely".
    func pollingConnectionDidClose(_ handler: EngineIOHTTPHandler) {
        guard case .polling(var polling) = self.state else { return }
        if polling.pendingPoll === handler {
            polling.pendingPoll = nil
        } else if polling.activePost === handler {
            polling.activePost = nil
        } else {
            return
        }
        self.state = .polling(polling)
        self.log("polling connection closed prematurely")
        self.terminate(.transportError, clientClosed: false)
    }

    // MARK: - WebSocket transport and upgrade

    /// Whether a WebSocket may take over: the session polls and no upgrade is under way.
    var canUpgrade: Bool {
        if case .polling(let polling) = self.state, polling.upgrade == nil { return true }
        return false
    }

    func beginUpgrade(_ webSocket: WebSocketTransportHandler) {
        guard case .polling(var polling) = self.state, polling.upgrade == nil else {
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
        polling.upgrade = Upgrade(webSocket: webSocket, probed: false, timeout: timeout)
        self.state = .polling(polling)
    }

    /// A packet from a WebSocket; nil for a malformed one.
    func webSocket(_ webSocket: WebSocketTransportHandler, didReceive packet: EngineIOPacket?) {
        switch self.state {
        case .websocket(let current) where current === webSocket:
            guard let packet else {
                self.terminate(.parseError, clientClosed: false)
                return
            }
            self.handle(packet)
        case .polling(var polling) where polling.upgrade?.webSocket === webSocket:
            switch packet {
            case .ping(let payload) where EngineIOPacket.isProbe(payload):
                self.log("got probe ping, sending pong")
                webSocket.write(CollectionOfOne(EngineIOMessage.probePong))
                polling.upgrade?.probed = true
                let poll = polling.pendingPoll
                polling.pendingPoll = nil
                self.state = .polling(polling)
                poll?.respondToPoll(with: [.noop])
            case .upgrade:
                self.log("got upgrade packet - upgrading")
                polling.upgrade?.timeout.cancel()
                self.state = .websocket(webSocket)
                self.transport = .websocket
                polling.pendingPoll?.respondToPoll(with: [.noop])
                if !self.outbox.isEmpty {
                    let messages = self.outbox
                    self.outbox = []
                    webSocket.write(messages)
                }
            default:
                self.abandonUpgrade(of: webSocket)
            }
        default:
            webSocket.close()
        }
    }

    func webSocketDidClose(_ webSocket: WebSocketTransportHandler) {
        switch self.state {
        case .websocket(let current) where current === webSocket:
            self.terminate(.transportClose, clientClosed: true)
        case .polling(var polling) where polling.upgrade?.webSocket === webSocket:
            polling.upgrade?.timeout.cancel()
            polling.upgrade = nil
            self.state = .polling(polling)
        default:
            break
        }
    }

    func webSocketDidFail(_ webSocket: WebSocketTransportHandler) {
        if case .websocket(let current) = self.state, current === webSocket {
            self.terminate(.transportError, clientClosed: false)
        } else {
            self.abandonUpgrade(of: webSocket)
        }
    }

    private func abandonUpgrade(of webSocket: WebSocketTransportHandler) {
        if case .polling(var polling) = self.state, let upgrade = polling.upgrade, upgrade.webSocket === webSocket {
            upgrade.timeout.cancel()
            polling.upgrade = nil
            self.state = .polling(polling)
        }
        webSocket.close()
    }

    private func log(_ message: @autoclosure () -> Logger.Message) {
        self.server.logger.debug(message(), metadata: ["sid": "\(self.id)"])
    }
}
