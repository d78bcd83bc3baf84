import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

/// The shared heartbeat timer: pings due close together go out in one wake-up, timeouts are
/// never early, and closed sessions leave nothing behind. The test server pings every 300 ms
/// and waits 200 ms for the pong, so pings are coalesced over 30 ms.
final class HeartbeatTests: XCTestCase {
    func testCoalescingWindowIsATenthOfTheIntervalAtMost100ms() {
        XCTAssertEqual(TestServer().server.heartbeat.coalescingWindow, .milliseconds(30))
        XCTAssertEqual(TestServer { $0.pingInterval = .seconds(25) }.server.heartbeat.coalescingWindow, .milliseconds(100))
    }

    func testPingsDueWithinTheWindowGoOutTogether() throws {
        let test = TestServer()
        let (first, _) = try test.openWebSocketSession()
        test.advance(by: .milliseconds(20))
        let (second, _) = try test.openWebSocketSession()
        test.advance(by: .milliseconds(20))
        let (third, _) = try test.openWebSocketSession()

        // The first ping is due at 300 ms; the second (320 ms) is within the window, the
        // third (340 ms) is not.
        test.advance(by: .milliseconds(259))
        XCTAssertEqual(try first.readTexts(), [])
        test.advance(by: .milliseconds(1))
        XCTAssertEqual(try first.readTexts(), ["2"])
        XCTAssertEqual(try second.readTexts(), ["2"])
        XCTAssertEqual(try third.readTexts(), [])
        test.advance(by: .milliseconds(40))
        XCTAssertEqual(try third.readTexts(), ["2"])
    }

    func testOnlySessionsThatDoNotAnswerTimeOut() throws {
        let test = TestServer()
        let (answering, answeringSid) = try test.openWebSocketSession()
        let (silent, silentSid) = try test.openWebSocketSession()
        test.advance(by: .milliseconds(300))
        XCTAssertEqual(try answering.readTexts(), ["2"])
        XCTAssertEqual(try silent.readTexts(), ["2"])
        try answering.sendText("3")
        test.advance(by: .milliseconds(199))
        XCTAssertTrue(silent.isActive)
        test.advance(by: .milliseconds(1))
        XCTAssertFalse(silent.isActive)
        XCTAssertEqual(test.delegate.closed.map(\.sid), [silentSid])
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.pingTimeout])
        XCTAssertTrue(answering.isActive)
        // The answering session is pinged again a full interval after its pong.
        test.advance(by: .milliseconds(99))
        XCTAssertEqual(try answering.readTexts(), [])
        test.advance(by: .milliseconds(1))
        XCTAssertEqual(try answering.readTexts(), ["2"])
        XCTAssertNotEqual(answeringSid, silentSid)
    }

    func testAPongRestartsTheIntervalWithoutAnEarlierPing() throws {
        let test = TestServer()
        let (connection, _) = try test.openWebSocketSession()
        test.advance(by: .milliseconds(300))
        XCTAssertEqual(try connection.readTexts(), ["2"])
        test.advance(by: .milliseconds(100))
        try connection.sendText("3")
        // Due at 400 + 300 ms; nothing at the old timeout (500 ms) or before.
        test.advance(by: .milliseconds(299))
        XCTAssertEqual(try connection.readTexts(), [])
        XCTAssertTrue(connection.isActive)
        test.advance(by: .milliseconds(1))
        XCTAssertEqual(try connection.readTexts(), ["2"])
    }

    func testClosedSessionsLeaveNoEntriesAndNoTimer() throws {
        let test = TestServer()
        weak var released: EngineIOSession?
        try {
            let (first, _) = try test.openWebSocketSession()
            let (second, _) = try test.openWebSocketSession()
            XCTAssertEqual(test.server.heartbeat.queuedEntryCount, 2)
            XCTAssertTrue(test.server.heartbeat.isTimerArmed)
            released = test.delegate.opened[1]
            try second.sendText("1")
            try first.sendText("1")
        }()
        test.loop.run()
        test.delegate.opened.removeAll()
        XCTAssertNil(released)
        XCTAssertEqual(test.server.heartbeat.queuedEntryCount, 0)
        test.advance(by: .seconds(1))
        XCTAssertFalse(test.server.heartbeat.isTimerArmed)
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportClose, .transportClose])
    }

    func testCloseAllStopsTheTimer() throws {
        let test = TestServer()
        _ = try test.openWebSocketSession()
        _ = try test.openPollingSession()
        test.server.closeAll(reason: .serverShuttingDown)
        XCTAssertFalse(test.server.heartbeat.isTimerArmed)
        XCTAssertEqual(test.server.heartbeat.queuedEntryCount, 0)
    }
}
