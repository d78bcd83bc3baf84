import Logging
import NIOCore
import NIOEmbedded
import XCTest

@testable import Redis

final class RedisCommandHandlerTests: XCTestCase {
    private var channel: EmbeddedChannel!

    override func setUpWithError() throws {
        self.channel = EmbeddedChannel()
        try self.channel.pipeline.syncOperations.addHandler(RedisCommandHandler(logger: Logger(label: "test")))
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
    }

    override func tearDownWithError() throws {
        _ = try self.channel.finish(acceptAlreadyClosed: true)
    }

    private func request(_ arguments: String...) -> EventLoopFuture<RedisReply> {
        let promise = self.channel.eventLoop.makePromise(of: RedisReply.self)
        self.channel.writeAndFlush(RedisCommandRequest(command: RedisCommand(arguments), reply: promise), promise: nil)
        return promise.futureResult
    }

    func testMatchesRepliesToCommandsInOrder() throws {
        let first = self.request("GET", "a")
        self.channel.writeAndFlush(RedisCommandRequest(command: .publish("room", ByteBuffer(string: "x")), reply: nil), promise: nil)
        let third = self.request("INCR", "b")
        XCTAssertEqual(try self.channel.readOutbound(as: RedisCommand.self), RedisCommand(["GET", "a"]))
        XCTAssertEqual(try self.channel.readOutbound(as: RedisCommand.self), .publish("room", ByteBuffer(string: "x")))
        XCTAssertEqual(try self.channel.readOutbound(as: RedisCommand.self), RedisCommand(["INCR", "b"]))

        try self.channel.writeInbound(RedisReply.bulk(ByteBuffer(string: "A")))
        try self.channel.writeInbound(RedisReply.integer(1))
        try self.channel.writeInbound(RedisReply.integer(7))
        XCTAssertEqual(try first.wait(), .bulk(ByteBuffer(string: "A")))
        XCTAssertEqual(try third.wait(), .integer(7))
        XCTAssertTrue(self.channel.isActive)
    }

    func testErrorRepliesAreValuesNotFailures() throws {
        let reply = self.request("INCR", "text")
        try self.channel.writeInbound(RedisReply.error("ERR value is not an integer"))
        XCTAssertEqual(try reply.wait(), .error("ERR value is not an integer"))
    }

    func testFailsEveryPendingCommandWhenTheConnectionCloses() throws {
        let first = self.request("PING")
        let second = self.request("PING")
        try self.channel.close().wait()
        XCTAssertThrowsError(try first.wait()) { XCTAssertEqual($0 as? RedisClientError, .connectionClosed) }
        XCTAssertThrowsError(try second.wait()) { XCTAssertEqual($0 as? RedisClientError, .connectionClosed) }
    }

    func testAReplyNobodyAskedForClosesTheConnection() throws {
        try self.channel.writeInbound(RedisReply.status("OK"))
        XCTAssertFalse(self.channel.isActive)
    }

    func testAnErrorFailsPendingCommandsWithIt() throws {
        let reply = self.request("PING")
        self.channel.pipeline.fireErrorCaught(RedisClientError.timedOut)
        XCTAssertThrowsError(try reply.wait()) { XCTAssertEqual($0 as? RedisClientError, .timedOut) }
        XCTAssertFalse(self.channel.isActive)
    }
}

final class RedisPubSubHandlerTests: XCTestCase {
    /// Loop-confined record of what the handler delivered.
    private final class Delivered {
        var messages: [String] = []
        var ready = false
    }

    private func bulk(_ text: String) -> RedisReply {
        .bulk(ByteBuffer(string: text))
    }

    func testRoutesMessagesAndSignalsReadyOnPong() throws {
        let channel = EmbeddedChannel()
        let ready = channel.eventLoop.makePromise(of: Void.self)
        let delivered = Delivered()
        try channel.pipeline.syncOperations.addHandler(RedisPubSubHandler(ready: ready) { message in
            switch message {
            case .message(let name, let payload):
                delivered.messages.append("\(name):\(String(buffer: payload))")
            case .patternMessage(let pattern, let name, let payload):
                delivered.messages.append("\(pattern)|\(name):\(String(buffer: payload))")
            }
        })
        ready.futureResult.assumeIsolated().whenSuccess { delivered.ready = true }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()

        try channel.writeInbound(RedisReply.array([self.bulk("subscribe"), self.bulk("room"), .integer(1)]))
        try channel.writeInbound(RedisReply.array([self.bulk("psubscribe"), self.bulk("r*"), .integer(2)]))
        XCTAssertFalse(delivered.ready)
        try channel.writeInbound(RedisReply.array([self.bulk("pong"), self.bulk("")]))
        XCTAssertTrue(delivered.ready)
        try channel.writeInbound(RedisReply.array([self.bulk("message"), self.bulk("room"), self.bulk("hi")]))
        try channel.writeInbound(RedisReply.array([self.bulk("pmessage"), self.bulk("r*"), self.bulk("room"), self.bulk("hi")]))
        XCTAssertEqual(delivered.messages, ["room:hi", "r*|room:hi"])
        XCTAssertTrue(channel.isActive)
        XCTAssertTrue(try channel.finish().isClean)
    }

    func testFailsReadyWhenClosedBeforePong() throws {
        let channel = EmbeddedChannel()
        let ready = channel.eventLoop.makePromise(of: Void.self)
        try channel.pipeline.syncOperations.addHandler(RedisPubSubHandler(ready: ready) { _ in })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        try channel.writeInbound(RedisReply.error("NOPERM this user has no permissions to access one of the channels"))
        XCTAssertFalse(channel.isActive)
        XCTAssertThrowsError(try ready.futureResult.wait()) { error in
            XCTAssertEqual(error as? RedisClientError, .commandFailed("NOPERM this user has no permissions to access one of the channels"))
        }
    }
}
