import Metrics

/// The Engine.IO layer's metrics. The objects are made once per server, so opening and closing
/// sessions only bumps them: no lookups or label strings per event.
struct EngineIOMetrics {
    private let pollingClients = Meter(label: "sidecast_connected_clients", dimensions: [("transport", "polling")])
    private let webSocketClients = Meter(label: "sidecast_connected_clients", dimensions: [("transport", "websocket")])
    private let pollingOpened = Counter(label: "sidecast_connections_opened_total", dimensions: [("transport", "polling")])
    private let webSocketOpened = Counter(label: "sidecast_connections_opened_total", dimensions: [("transport", "websocket")])
    private let originRefusals = Counter(label: "sidecast_connections_refused_total", dimensions: [("reason", "origin")])
    /// One counter per reason, labelled in snake case ("ping_timeout") so queries need no quoting of spaces.
    private let closed: [EngineIOCloseReason: Counter]
    /// Polling clients closed for sending a POST while their last one was still unanswered.
    private let overlappingPosts = Counter(
        label: "sidecast_client_limit_exceeded_total", dimensions: [("limit", "polling_posts")]
    )

    init() {
        let reasons: [EngineIOCloseReason] = [
            .transportClose, .transportError, .pingTimeout, .parseError, .forcedClose, .serverShuttingDown,
        ]
        var closed: [EngineIOCloseReason: Counter] = [:]
        for reason in reasons {
            let label = String(reason.rawValue.map { $0 == " " ? "_" : $0 })
            closed[reason] = Counter(label: "sidecast_connections_closed_total", dimensions: [("reason", label)])
        }
        self.closed = closed
    }

    func opened(_ transport: EngineIOTransportKind) {
        switch transport {
        case .polling:
            self.pollingOpened.increment()
            self.pollingClients.increment()
        case .websocket:
            self.webSocketOpened.increment()
            self.webSocketClients.increment()
        }
    }

    /// A request, of a new session or of an open one, refused for its `Origin`.
    func refusedForOrigin() {
        self.originRefusals.increment()
    }

    func refusedOverlappingPost() {
        self.overlappingPosts.increment()
    }

    func upgraded() {
        self.pollingClients.decrement()
        self.webSocketClients.increment()
    }

    func closed(_ transport: EngineIOTransportKind, reason: EngineIOCloseReason) {
        switch transport {
        case .polling: self.pollingClients.decrement()
        case .websocket: self.webSocketClients.decrement()
        }
        self.closed[reason]?.increment()
    }
}
