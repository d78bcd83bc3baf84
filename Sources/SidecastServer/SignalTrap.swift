import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Makes dispatch signal sources that are live when they are handed over.
///
/// Dispatch registers a signal source later, on its manager thread, and only then can it see the
/// signal: on Linux it installs its own handler at that moment, which passes the signal to a
/// signalfd. Until then the signal meets whatever disposition it had. The usual advice, ignoring
/// it first, loses it: the kernel drops an ignored signal that the main thread does not block,
/// and libdispatch parks the main thread with nothing blocked. Under load the manager thread can
/// lag behind the node's start, so a SIGTERM sent as soon as the port accepted was dropped and the
/// node never stopped. Hence `trap(_:on:handler:)` returns only once the source is registered,
/// and signals keep their default action until then: one that comes while nothing listens yet
/// ends the process at once rather than being lost.
enum SignalTrap {
    /// A source that calls `handler` on `queue` for every `number` from now on; cancel it and
    /// restore `SIG_DFL` to stop trapping.
    static func trap(_ number: Int32, on queue: DispatchQueue, handler: @escaping @Sendable () -> Void) async -> DispatchSourceSignal {
        let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
        source.setEventHandler(handler: handler)
        await withCheckedContinuation { (registered: CheckedContinuation<Void, Never>) in
            source.setRegistrationHandler {
                #if canImport(Darwin)
                // kqueue reports ignored signals too, but does not stop their default action.
                // On Linux this would undo the handler Dispatch has just installed.
                signal(number, SIG_IGN)
                #endif
                registered.resume()
            }
            source.resume()
        }
        return source
    }
}
