import NIOCore
import XCTest

@testable import Redis

/// The reader's decision on entries that may be copies a retry appended. The entries carry the
/// fields of `@socket.io/redis-streams-adapter` (`RedisStreamsAdapter.encode` in its
/// `lib/adapter.ts`: uid, nsp, type, data) and, from sidecast, ``RedisStreamDuplicateFilter/sequenceField``.
final class RedisStreamDuplicateFilterTests: XCTestCase {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func entry(uid: String = "a1b2c3d4e5f6", sequence: String?, type: String = "3") -> [String: ByteBuffer] {
        var fields = ["uid": uid, "nsp": "/", "type": type, "data": "{}"]
        fields[RedisStreamDuplicateFilter.sequenceField] = sequence
        return fields.mapValues { ByteBuffer(string: $0) }
    }

    func testTheFieldIsNoneOfTheNodeAdapters() {
        // Node's decode reads these four and nothing else; a field of the same name would be
        // read as something else.
        XCTAssertFalse(["uid", "nsp", "type", "data"].contains(RedisStreamDuplicateFilter.sequenceField))
    }

    func testNewerNumbersPassAndACopyIsDropped() {
        var filter = RedisStreamDuplicateFilter(writerField: "uid")
        XCTAssertEqual(filter.judge(entry(sequence: "1"), now: start), .new)
        XCTAssertEqual(filter.judge(entry(sequence: "2"), now: start), .new)
        // The copy of entry 2 a retry appended.
        XCTAssertEqual(filter.judge(entry(sequence: "2"), now: start), .duplicate(sequence: 2, highest: 2))
        XCTAssertEqual(filter.judge(entry(sequence: "3"), now: start), .new)
    }

    func testAnOlderNumberIsACopy() {
        var filter = RedisStreamDuplicateFilter(writerField: "uid")
        for number in 1...5 { XCTAssertEqual(filter.judge(entry(sequence: String(number)), now: start), .new) }
        // A retry sends every unconfirmed entry again, in order: 3, 4 and 5 after 5.
        XCTAssertEqual(filter.judge(entry(sequence: "3"), now: start), .duplicate(sequence: 3, highest: 5))
        XCTAssertEqual(filter.judge(entry(sequence: "4"), now: start), .duplicate(sequence: 4, highest: 5))
        XCTAssertEqual(filter.judge(entry(sequence: "5"), now: start), .duplicate(sequence: 5, highest: 5))
        // Numbers may skip (entries dropped from a full outbox, or for a reader that
        // started late): the next one is still new.
        XCTAssertEqual(filter.judge(entry(sequence: "9"), now: start), .new)
        XCTAssertEqual(filter.judge(entry(sequence: "8"), now: start), .duplicate(sequence: 8, highest: 9))
    }

    func testEntriesWithoutANumberAlwaysPass() {
        var filter = RedisStreamDuplicateFilter(writerField: "uid")
        // A Node node, or an emitter (uid "emitter"), writes no number: every entry passes,
        // the same one twice included, as before numbering.
        for _ in 0..<2 {
            XCTAssertEqual(filter.judge(entry(uid: "0123456789abcdef", sequence: nil), now: start), .unnumbered)
            XCTAssertEqual(filter.judge(entry(uid: "emitter", sequence: nil), now: start), .unnumbered)
        }
        // A number that is none, or an entry without a writer, cannot be judged.
        XCTAssertEqual(filter.judge(entry(sequence: "seven"), now: start), .unnumbered)
        XCTAssertEqual(filter.judge(entry(sequence: "-1"), now: start), .unnumbered)
        var anonymous = entry(sequence: "1")
        anonymous["uid"] = nil
        XCTAssertEqual(filter.judge(anonymous, now: start), .unnumbered)
        XCTAssertEqual(filter.writerCount, 0, "nothing remembered of writers that do not number")
    }

    func testEachWriterHasItsOwnNumbers() {
        var filter = RedisStreamDuplicateFilter(writerField: "uid")
        XCTAssertEqual(filter.judge(entry(uid: "aaaaaaaaaaaa", sequence: "7"), now: start), .new)
        // A restarted sidecast has a new uid and numbers from 1 again.
        XCTAssertEqual(filter.judge(entry(uid: "bbbbbbbbbbbb", sequence: "1"), now: start), .new)
        XCTAssertEqual(filter.judge(entry(uid: "bbbbbbbbbbbb", sequence: "1"), now: start), .duplicate(sequence: 1, highest: 1))
        XCTAssertEqual(filter.judge(entry(uid: "aaaaaaaaaaaa", sequence: "8"), now: start), .new)
        XCTAssertEqual(filter.writerCount, 2)
    }

    func testEveryKindOfEntryIsJudged() {
        // Heartbeats and answers are numbered as broadcasts are, from the same counter.
        var filter = RedisStreamDuplicateFilter(writerField: "uid")
        XCTAssertEqual(filter.judge(entry(sequence: "1", type: "1"), now: start), .new)
        XCTAssertEqual(filter.judge(entry(sequence: "2", type: "3"), now: start), .new)
        XCTAssertEqual(filter.judge(entry(sequence: "1", type: "1"), now: start), .duplicate(sequence: 1, highest: 2))
    }

    func testAQuietWriterIsForgotten() {
        var filter = RedisStreamDuplicateFilter(writerField: "uid", forgetAfter: .minutes(5))
        XCTAssertEqual(filter.judge(entry(uid: "quiet0000000", sequence: "4"), now: start), .new)
        XCTAssertEqual(filter.judge(entry(uid: "busy00000000", sequence: "1"), now: start), .new)
        for minute in 1...6 {
            XCTAssertEqual(filter.judge(entry(uid: "busy00000000", sequence: String(minute + 1)), now: start + .minutes(Int64(minute))), .new)
        }
        XCTAssertEqual(filter.writerCount, 1, "the writer not heard from for longer than forgetAfter is gone")
        // Heard from within the window, it would still be judged.
        XCTAssertEqual(filter.judge(entry(uid: "busy00000000", sequence: "7"), now: start + .minutes(6)), .duplicate(sequence: 7, highest: 7))
    }
}
