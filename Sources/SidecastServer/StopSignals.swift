import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Traps SIGTERM and SIGINT while a node runs and reports which one came: swift-service-lifecycle
/// turns both into the same graceful shutdown, but SIGTERM drains with a delay and SIGINT does not.
///
/// Trapped from the very start, before any socket listens, since whoever sees a port accept may
/// already send a signal; one that comes before the node can act on it is kept until `forward(to:)`.
///
/// `@unchecked Sendable`: `handler` and `pending` are read and written only on `queue`, the
/// serial queue the signal sources also run on; `sources` is set once, in `init`.
final class StopSignals: @unchecked Sendable {
    private let queue = DispatchQueue(label: "sidecast.stop-signals")
    private var sources: [DispatchSourceSignal] = []
    private var handler: (@Sendable (StopRequest) -> Void)?
    private var pending: [StopRequest] = []

    /// Returns once both signals are trapped (`SignalTrap` says why that takes a wait).
    init() async {
        let trapped: [(Int32, StopRequest)] = [(SIGTERM, .terminate), (SIGINT, .interrupt)]
        var sources: [DispatchSourceSignal] = []
        for (number, request) in trapped {
            sources.append(await SignalTrap.trap(number, on: queue) { [weak self] in self?.deliver(request) })
        }
        self.sources = sources
    }

    /// Hands the signals to `handler` from now on, and any that came before at once.
    func forward(to handler: @escaping @Sendable (StopRequest) -> Void) {
        queue.async { [self] in
            self.handler = handler
            let early = pending
            pending = []
            for request in early { handler(request) }
        }
    }

    /// Stops trapping: a signal after the node stopped has its default effect again.
    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGTERM, SIG_DFL)
        signal(SIGINT, SIG_DFL)
    }

    private func deliver(_ request: StopRequest) {
        if let handler {
            handler(request)
        } else {
            pending.append(request)
        }
    }
}
