import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

/// A polling session holds at most one POST: one sent before the last was answered, even one
/// held unanswered while reading is paused, closes the session as Node's "data request
/// overlap from client" does, and the held one is still answered.
final class PollingPostOverlapTests: XCTestCase {
    private func pollURI(_ sid: String) -> String { "/engine.io/?EIO=4&transport=polling&sid=\(sid)" }

    func testPostWhileAnotherIsHeldClosesTheSessionAndAnswersBoth() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let first = try test.connect()
        XCTAssertNil(try first.request("POST", self.pollURI(sid), body: "4held"), "held while paused")

        let second = try test.connect()
        let refused = try XCTUnwrap(try second.request("POST", self.pollURI(sid), body: "4overlap"))
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual(try first.readResponse()?.body, "ok", "the held POST is answered, its packets dropped")
        XCTAssertEqual(test.delegate.closed.map(\.reason), [.transportError])
        XCTAssertEqual(test.server.sessionCount, 0)
        session.resumeReading()
        XCTAssertEqual(test.delegate.texts, [], "neither body reaches the delegate")
    }

    func testManyPostsWhilePausedNeverHoldMoreThanOne() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.pauseReading()
        let first = try test.connect()
        XCTAssertNil(try first.request("POST", self.pollURI(sid), body: "4a"))
        var answers: [Int] = []
        for _ in 0..<5 {
            let other = try test.connect()
            answers.append(try XCTUnwrap(try other.request("POST", self.pollURI(sid), body: "4b")).status)
        }
        XCTAssertEqual(answers, [400, 400, 400, 400, 400], "the first overlap closes the session; then the sid is unknown")
        XCTAssertEqual(test.delegate.closed.count, 1)
    }

    func testPostsOneAfterTheOtherAreFine() throws {
        let test = TestServer()
        test.delegate.echo = false
        let sid = try test.openPollingSession()
        let poster = try test.connect()
        for text in ["a", "b", "c"] {
            XCTAssertEqual(try poster.request("POST", self.pollURI(sid), body: "4" + text)?.body, "ok")
        }
        XCTAssertEqual(test.delegate.texts, ["a", "b", "c"])
        XCTAssertEqual(test.delegate.closed.count, 0)
    }
}
