import NIOCore
import NIOEmbedded
import XCTest

@testable import Redis

final class RESPReaderHandlerTests: XCTestCase {
    private var channel: EmbeddedChannel!

    override func setUpWithError() throws {
        self.channel = EmbeddedChannel()
        try self.channel.pipeline.syncOperations.addHandler(RESPReaderHandler())
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
    }

    override func tearDownWithError() throws {
        _ = try self.channel.finish(acceptAlreadyClosed: true)
    }

    private func feed(_ text: String) throws {
        try self.channel.writeInbound(ByteBuffer(string: text))
    }

    private func readAll() throws -> [RedisReply] {
        var replies: [RedisReply] = []
        while let reply = try self.channel.readInbound(as: RedisReply.self) {
            replies.append(reply)
        }
        return replies
    }

    func testReadsEveryScalarReplyType() throws {
        try self.feed("+OK\r\n-ERR wrong type\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n")
        XCTAssertEqual(try self.readAll(), [
            .status("OK"),
            .error("ERR wrong type"),
            .integer(42),
            .integer(-7),
            .bulk(ByteBuffer(string: "hello")),
            .bulk(ByteBuffer()),
            .null,
        ])
    }

    func testReadsNestedEmptyAndNullArrays() throws {
        try self.feed("*3\r\n:1\r\n*2\r\n$1\r\na\r\n*1\r\n+deep\r\n$-1\r\n*0\r\n*-1\r\n")
        XCTAssertEqual(try self.readAll(), [
            .array([.integer(1), .array([.bulk(ByteBuffer(string: "a")), .array([.status("deep")])]), .null]),
            .array([]),
            .null,
        ])
    }

    func testReadsPubSubMessageWithBinaryPayload() throws {
        let payload: [UInt8] = [0, 13, 10, 255, 36]
        var bytes = ByteBuffer(string: "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\n")
        bytes.writeBytes(payload)
        bytes.writeString("\r\n")
        try self.channel.writeInbound(bytes)
        XCTAssertEqual(try self.readAll(), [
            .array([.bulk(ByteBuffer(string: "message")), .bulk(ByteBuffer(string: "room")), .bulk(ByteBuffer(bytes: payload))]),
        ])
    }

    func testReassemblesRepliesSplitAcrossReads() throws {
        let wire = "*2\r\n$11\r\nhello world\r\n:123\r\n+PONG\r\n"
        var replies: [RedisReply] = []
        for byte in wire.utf8 {
            try self.channel.writeInbound(ByteBuffer(bytes: [byte]))
            replies += try self.readAll()
            if replies.isEmpty {
                XCTAssertTrue(self.channel.isActive)
            }
        }
        XCTAssertEqual(replies, [.array([.bulk(ByteBuffer(string: "hello world")), .integer(123)]), .status("PONG")])
    }

    func testKeepsAPartialReplyUntilTheRestArrives() throws {
        try self.feed("$10\r\n01234")
        XCTAssertEqual(try self.readAll(), [])
        try self.feed("56789\r\n:1")
        XCTAssertEqual(try self.readAll(), [.bulk(ByteBuffer(string: "0123456789"))])
        try self.feed("\r\n")
        XCTAssertEqual(try self.readAll(), [.integer(1)])
    }

    /// Found by running a crafted input through Fuzz/FuzzRedis: 15 bytes made hiredis 0.14
    /// allocate 16 GiB of element pointers.
    func testArrayAnnouncingTooManyElementsIsAProtocolError() throws {
        for count in [Int64(RESPReader.maximumArrayElements) + 1, Int64(Int32.max)] {
            let reader = try XCTUnwrap(RESPReader())
            try reader.feed(ByteBuffer(string: "*\(count)\r\n"))
            XCTAssertThrowsError(try reader.next(allocator: ByteBufferAllocator())) { error in
                guard case RedisClientError.protocolError(let message) = error else {
                    return XCTFail("expected a protocol error, got \(error)")
                }
                XCTAssertEqual(message, "an array reply of \(count) elements, over the limit of \(RESPReader.maximumArrayElements)")
            }
        }
        XCTAssertThrowsError(try self.feed("*2147483647\r\n"))
        XCTAssertFalse(self.channel.isActive)
    }

    func testArrayAtTheElementLimitWaitsForItsElements() throws {
        let reader = try XCTUnwrap(RESPReader())
        try reader.feed(ByteBuffer(string: "*\(RESPReader.maximumArrayElements)\r\n:1\r\n"))
        XCTAssertNil(try reader.next(allocator: ByteBufferAllocator()))
    }

    func testProtocolErrorIsReportedAndClosesTheChannel() throws {
        XCTAssertThrowsError(try self.feed("?what\r\n")) { error in
            guard case RedisClientError.protocolError(let message) = error else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertFalse(message.isEmpty)
        }
        XCTAssertFalse(self.channel.isActive)
    }
}
