import Logging
import Metrics
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A descriptor held open on /dev/null so that a listener out of descriptors can still take
/// what waits in its backlog and close it at once, as libuv does: those clients see a reset
/// now rather than hang until their handshake timeout, and the listening socket stops being
/// readable, so its accept loop does not spin on `EMFILE`.
///
/// Confined to the node's event loop, the only thread that accepts.
final class DescriptorReserve {
    private var descriptor: CInt
    /// When the listeners last warned that descriptors ran out; one warning covers them all.
    var lastWarning: NIODeadline?
    /// Connections closed at once, over all listeners, since that warning.
    var closedSinceWarning = 0

    init() {
        descriptor = Self.openSpare()
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Whether the spare descriptor is held; another thread may take it in the instant it is
    /// free, and it comes back only once a descriptor is free again.
    var isHeld: Bool { descriptor >= 0 }

    /// Frees the spare descriptor, accepts and closes the connections waiting on `listener`
    /// (at most a backlog's worth), then takes the spare again. Returns how many were closed.
    func drain(listener: CInt) -> Int {
        if descriptor < 0 { descriptor = Self.openSpare() }
        guard descriptor >= 0 else { return 0 }
        close(descriptor)
        var drained = 0
        while drained < 4096 {
            let accepted = accept(listener, nil, nil)
            guard accepted >= 0 else { break }
            close(accepted)
            drained += 1
        }
        descriptor = Self.openSpare()
        return drained
    }

    private static func openSpare() -> CInt {
        open("/dev/null", O_RDONLY | O_CLOEXEC)
    }
}

/// On a listening channel: when `accept` fails for want of descriptors (`EMFILE`, `ENFILE`),
/// drains the backlog through the `DescriptorReserve` and logs a warning with the numbers, once
/// a minute at most over all listeners while it lasts; NIO's `AcceptBackoffHandler`, next in the pipeline, then
/// pauses accepting briefly, so that even without the spare descriptor nothing spins.
final class AcceptOverflowHandler: ChannelInboundHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel

    /// The pause after an accept that found no descriptor: short, since clients that arrive in
    /// it wait in the backlog.
    static let backoff: TimeAmount = .milliseconds(100)
    /// At a steady trickle of clients past the limit, each accept finds no descriptor: one
    /// warning covers them all for this long.
    static let warningInterval: TimeAmount = .seconds(60)

    private let listener: ListeningSocket
    private let reserve: DescriptorReserve
    private let logger: Logger
    /// The numbers to log: the open-file limit, clients, backends.
    private let numbers: () -> Logger.Metadata
    private let closedAtOnce: Counter?

    /// `closedAtOnce` counts the connections drained on the client listener.
    init(listener: ListeningSocket, reserve: DescriptorReserve, logger: Logger, closedAtOnce: Counter?,
         numbers: @escaping () -> Logger.Metadata) {
        self.listener = listener
        self.reserve = reserve
        self.logger = logger
        self.closedAtOnce = closedAtOnce
        self.numbers = numbers
    }

    static func isOutOfDescriptors(_ error: IOError) -> Bool {
        error.errnoCode == EMFILE || error.errnoCode == ENFILE
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let ioError = error as? IOError, Self.isOutOfDescriptors(ioError) else {
            context.fireErrorCaught(error)
            return
        }
        let drained = reserve.drain(listener: listener.descriptor)
        if drained > 0 { closedAtOnce?.increment(by: Int64(drained)) }
        reserve.closedSinceWarning += drained
        let now = NIODeadline.now()
        if reserve.lastWarning.map({ now - $0 >= Self.warningInterval }) ?? true {
            reserve.lastWarning = now
            var metadata = numbers()
            metadata["listener"] = "\(listener.description)"
            metadata["closed_at_once"] = "\(reserve.closedSinceWarning)"
            metadata["spare_descriptor"] = "\(reserve.isHeld ? "held" : "gone; pausing accepts instead")"
            reserve.closedSinceWarning = 0
            logger.warning(
                "out of file descriptors: new connections are accepted and closed at once until some close; raise LimitNOFILE or lower --max-connections",
                metadata: metadata
            )
        }
        context.fireErrorCaught(error)
    }
}
