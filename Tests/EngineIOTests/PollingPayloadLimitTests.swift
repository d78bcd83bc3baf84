import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

final class PollingPayloadLimitTests: XCTestCase {
    func testALongOutboxGoesOutSixteenPacketsPerPoll() throws {
        let test = TestServer()
        let connection = try test.connect()
        let sid = try test.openPollingSession(on: connection)
        let session = try XCTUnwrap(test.delegate.opened.first)
        session.send((0..<20).map { EngineIOMessage.text("m\($0)") })

        let first = try XCTUnwrap(connection.request("GET", "\(test.server.configuration.path)?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(first.body.split(separator: "\u{1e}").map(String.init), (0..<16).map { "4m\($0)" })
        XCTAssertEqual(session.bufferedBytes, "4m16\u{1e}4m17\u{1e}4m18\u{1e}4m19".utf8.count)

        let second = try XCTUnwrap(connection.request("GET", "\(test.server.configuration.path)?EIO=4&transport=polling&sid=\(sid)"))
        XCTAssertEqual(second.body, "4m16\u{1e}4m17\u{1e}4m18\u{1e}4m19")
        XCTAssertEqual(session.bufferedBytes, 0)
    }
}
