import Dispatch
import XCTest

@testable import SidecastServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class SignalTrapTests: XCTestCase {
    /// Each signal sent the moment its trap returns reaches the handler: a source Dispatch had
    /// not registered yet lost a signal whose default action is to be ignored (SIGWINCH, SIGURG),
    /// and let the others end this process. Every signal is trapped only once per process, as
    /// Dispatch installs its handler for a signal only for the first source of it.
    func testSignalSentAsSoonAsTrappedIsDelivered() async {
        let queue = DispatchQueue(label: "signal-trap-test")
        for number in [SIGUSR1, SIGUSR2, SIGWINCH, SIGURG, SIGALRM, SIGVTALRM] {
            let delivered = expectation(description: "signal \(number) delivered")
            let source = await SignalTrap.trap(number, on: queue) { delivered.fulfill() }
            XCTAssertEqual(kill(getpid(), number), 0)
            await fulfillment(of: [delivered], timeout: 10)
            source.cancel()
            signal(number, SIG_DFL)
        }
    }
}
