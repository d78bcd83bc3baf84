import XCTest

@testable import Bridge

final class BackendGroupTests: XCTestCase {
    func testStableIndexIsDeterministicAndInRange() {
        for count in 1...7 {
            for id in ["a", "Xk3vNnOQ0cZ1e2AAAAB", "", "zzzzzzzzzzzzzzzzzzzz"] {
                let index = BackendGroup.stableIndex(id, count: count)
                XCTAssertTrue((0..<count).contains(index))
                XCTAssertEqual(index, BackendGroup.stableIndex(id, count: count))
            }
        }
    }

    func testStableIndexSpreadsIds() {
        var seen = Set<Int>()
        for n in 0..<100 { seen.insert(BackendGroup.stableIndex("socket-\(n)", count: 4)) }
        XCTAssertEqual(seen, [0, 1, 2, 3])
    }
}
