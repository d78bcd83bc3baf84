import NIOCore
import XCTest

import EngineIO

final class WarningThrottleTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testFirstOccurrenceWarnsThenHoldsBackUntilTheIntervalPassed() {
        var throttle = WarningThrottle(interval: .seconds(10))
        XCTAssertEqual(throttle.record("/", at: start), 1)
        XCTAssertNil(throttle.record("/", at: start + .seconds(1)))
        XCTAssertNil(throttle.record("/", count: 3, at: start + .seconds(9)))
        XCTAssertEqual(throttle.record("/", at: start + .seconds(10)), 5, "this one and the four held back")
        XCTAssertNil(throttle.record("/", at: start + .seconds(11)))
        XCTAssertEqual(throttle.record("/", at: start + .seconds(60)), 2)
    }

    func testKeysAreThrottledApart() {
        var throttle = WarningThrottle(interval: .seconds(10))
        XCTAssertEqual(throttle.record("/a", at: start), 1)
        XCTAssertEqual(throttle.record("/b", at: start), 1)
        XCTAssertNil(throttle.record("/a", at: start + .milliseconds(5)))
        XCTAssertEqual(throttle.record("/c", count: 7, at: start + .milliseconds(5)), 7)
    }

    func testAThousandOccurrencesWithinTheIntervalWarnOnce() {
        var throttle = WarningThrottle(interval: .seconds(10))
        var warnings = 0
        for i in 0..<1000 where throttle.record("/", at: start + .milliseconds(Int64(i))) != nil {
            warnings += 1
        }
        XCTAssertEqual(warnings, 1)
        XCTAssertEqual(throttle.record("/", at: start + .seconds(10)), 1000)
    }
}
