import EngineIOTestSupport
import NIOCore
import XCTest

@testable import EngineIO

/// Frames encoded in advance (broadcasts, heartbeats) are written past NIO's frame encoder:
/// straight to the channel when nothing sits ahead of the encoder, through the handlers ahead
/// of it (TLS) otherwise.
final class EncodedFrameWriterTests: XCTestCase {
    /// Passes every write on and keeps a copy, as TLS would encrypt it.
    private final class WriteRecorder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var written = ByteBuffer()

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            var bytes = Self.unwrapOutboundIn(data)
            self.written.writeBuffer(&bytes)
            context.write(data, promise: promise)
        }
    }

    private func send(_ texts: [String], to session: EngineIOSession) {
        for (index, text) in texts.enumerated() {
            // Every other one encoded in advance, as a broadcast is, the others by NIO's encoder.
            session.send(index.isMultiple(of: 2) ? EngineIOBroadcastEncoder.prepare([.text(text)]) : [.text(text)])
        }
    }

    func testFramesEncodedInAdvanceKeepTheirPlaceAmongTheOthers() throws {
        let server = TestServer()
        server.delegate.echo = false
        let (connection, _) = try server.openWebSocketSession()
        let session = try XCTUnwrap(server.delegate.opened.last)
        self.send(["one", "two", "three", "four", "five"], to: session)
        XCTAssertEqual(try connection.readTexts(), ["4one", "4two", "4three", "4four", "4five"])
    }

    func testFramesEncodedInAdvancePassTheHandlersAheadOfTheServers() throws {
        let server = TestServer()
        server.delegate.echo = false
        let recorder = WriteRecorder()
        let (connection, _) = try server.openWebSocketSession(ahead: recorder)
        let session = try XCTUnwrap(server.delegate.opened.last)
        recorder.written.clear()
        self.send(["one", "two", "three"], to: session)
        XCTAssertEqual(try connection.readTexts(), ["4one", "4two", "4three"])
        // Text frames of up to 125 bytes: two header bytes, then the packet.
        XCTAssertEqual(Array(recorder.written.readableBytesView),
                       [0x81, 4] + Array("4one".utf8) + [0x81, 4] + Array("4two".utf8) + [0x81, 6] + Array("4three".utf8))
    }
}
