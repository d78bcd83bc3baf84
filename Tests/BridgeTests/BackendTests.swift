import NIOCore
import NIOEmbedded
import XCTest

@testable import Bridge

final class BackendTests: XCTestCase {
    private func makeBackend(_ channel: EmbeddedChannel) -> Backend {
        Backend(id: 1, hello: .init(version: 1, namespaces: ["/"], group: "default", authorize: false), channel: channel)
    }

    private func outboundLines(_ channel: EmbeddedChannel) throws -> [String] {
        var lines: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { lines.append(String(buffer: buffer)) }
        return lines
    }

    func testLinesOutsideAReadBatchAreFlushedTogetherAtTheEndOfTheLoopRound() throws {
        let channel = EmbeddedChannel()
        let backend = makeBackend(channel)
        backend.send(line: ByteBuffer(string: "a\n"))
        backend.send(line: ByteBuffer(string: "b\n"))
        XCTAssertEqual(try outboundLines(channel), [])
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try outboundLines(channel), ["a\n", "b\n"])
        backend.send(line: ByteBuffer(string: "c\n"))
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try outboundLines(channel), ["c\n"])
    }

    func testRepliesOfAReadBatchAreFlushedTogetherAtItsEnd() throws {
        let channel = EmbeddedChannel()
        let backend = makeBackend(channel)
        backend.beginReadBatch()
        backend.send(line: ByteBuffer(string: "a\n"))
        backend.beginReadBatch()
        backend.send(line: ByteBuffer(string: "b\n"))
        XCTAssertEqual(try outboundLines(channel), [])
        backend.endReadBatch()
        XCTAssertEqual(try outboundLines(channel), ["a\n", "b\n"])
        backend.send(line: ByteBuffer(string: "c\n"))
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try outboundLines(channel), ["c\n"])
    }

    func testADetachedBackendWritesNothing() throws {
        let channel = EmbeddedChannel()
        let backend = makeBackend(channel)
        backend.beginReadBatch()
        backend.detached()
        backend.send(line: ByteBuffer(string: "a\n"))
        backend.endReadBatch()
        XCTAssertEqual(try outboundLines(channel), [])
    }

    func testABackendOnAnotherLoopGetsTheRoundsLinesInOneHandOffInOrder() throws {
        let connectionLoop = EmbeddedEventLoop()
        let bridgeLoop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: connectionLoop)
        let backend = Backend(
            id: 1, hello: .init(version: 1, namespaces: ["/"], group: "default", authorize: false),
            channel: channel, eventLoop: bridgeLoop
        )
        backend.send(line: ByteBuffer(string: "a\n"))
        backend.send(line: ByteBuffer(string: "b\n"))
        connectionLoop.run()
        XCTAssertEqual(try outboundLines(channel), [], "nothing crosses before the bridge's round ends")
        bridgeLoop.run()
        XCTAssertEqual(try outboundLines(channel), [], "the lines wait for the connection's loop")
        backend.beginReadBatch()
        backend.send(line: ByteBuffer(string: "c\n"))
        backend.endReadBatch()
        connectionLoop.run()
        XCTAssertEqual(try outboundLines(channel), ["a\n", "b\n", "c\n"])
        backend.send(line: ByteBuffer(string: "d\n"))
        backend.sendAndClose(["type": "shutdown"])
        connectionLoop.run()
        XCTAssertEqual(try outboundLines(channel), ["d\n", #"{"type":"shutdown"}"# + "\n"], "queued lines go before the last one")
    }
}
