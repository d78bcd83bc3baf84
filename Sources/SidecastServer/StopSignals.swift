import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Traps SIGTERM and SIGINT while a node runs and reports which one came: swift-service-lifecycle
/// turns both into the same graceful shutdown, but SIGTERM drains with a delay and SIGINT does not.
struct StopSignals {
    private let sources: [DispatchSourceSignal]

    init(onSignal: @escaping @Sendable (StopRequest) -> Void) {
        let trapped: [(Int32, StopRequest)] = [(SIGTERM, .terminate), (SIGINT, .interrupt)]
        sources = trapped.map { number, request in
            // Dispatch sees the signal only once its default action (exit) is off.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { onSignal(request) }
            source.resume()
            return source
        }
    }

    /// Stops trapping: a signal after the node stopped has its default effect again.
    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGTERM, SIG_DFL)
        signal(SIGINT, SIG_DFL)
    }
}
