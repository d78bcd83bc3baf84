import Dispatch
import XCTest

@testable import SidecastServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class StopSignalsTests: XCTestCase {
    /// A SIGTERM sent the moment `StopSignals` exists, as a supervisor sends it the moment the
    /// port accepts, reaches the node. Dispatch registers a signal source later, on its manager
    /// thread; ignored until then, the signal was dropped and the node never stopped.
    ///
    /// One signal per process: Dispatch installs its handler for a signal only the first time a
    /// source of it is registered, and `cancel()` gives the signal back its default action.
    func testSigtermSentAsSoonAsTrappedIsDelivered() async {
        let signals = await StopSignals()
        let delivered = expectation(description: "SIGTERM reported as .terminate")
        signals.forward { request in
            if case .terminate = request { delivered.fulfill() }
        }
        XCTAssertEqual(kill(getpid(), SIGTERM), 0)
        await fulfillment(of: [delivered], timeout: 10)
        signals.cancel()
    }
}
