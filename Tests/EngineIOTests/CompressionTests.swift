import CompressNIO
import NIOCore
import NIOHTTP1
import XCTest

@testable import EngineIO

/// permessage-deflate negotiation (RFC 7692 §7.1), its DEFLATE framing (§7.2) and the choice of
/// HTTP content coding; the compression itself is zlib's, through compress-nio.
final class CompressionTests: XCTestCase {
    private func offer(_ values: String...) -> HTTPHeaders {
        HTTPHeaders(values.map { ("Sec-WebSocket-Extensions", $0) })
    }

    func testNegotiationAcceptsWhatBrowsersAndWsOffer() {
        // Chromium's and Firefox's offer.
        XCTAssertEqual(PerMessageDeflate.negotiate(offer("permessage-deflate; client_max_window_bits"))?.responseHeader,
                       "permessage-deflate; server_no_context_takeover")
        // Node's ws, with its defaults.
        XCTAssertEqual(PerMessageDeflate.negotiate(offer("permessage-deflate; client_max_window_bits=15"))?.responseHeader,
                       "permessage-deflate; server_no_context_takeover")
        XCTAssertEqual(PerMessageDeflate.negotiate(offer("Permessage-Deflate;Server_No_Context_Takeover; server_max_window_bits=\"15\""))?.responseHeader,
                       "permessage-deflate; server_no_context_takeover")
        XCTAssertEqual(PerMessageDeflate.negotiate(offer("permessage-deflate; client_no_context_takeover"))?.responseHeader,
                       "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    }

    func testNegotiationDeclinesOffersItCannotHonourAndTakesTheNextOne() {
        XCTAssertNil(PerMessageDeflate.negotiate(HTTPHeaders()))
        XCTAssertNil(PerMessageDeflate.negotiate(offer("x-webkit-deflate-frame")))
        // A smaller server window would need a frame of its own for this client.
        XCTAssertNil(PerMessageDeflate.negotiate(offer("permessage-deflate; server_max_window_bits=10")))
        for invalid in ["permessage-deflate; server_max_window_bits", "permessage-deflate; server_max_window_bits=016",
                        "permessage-deflate; client_max_window_bits=7", "permessage-deflate; client_max_window_bits=x",
                        "permessage-deflate; server_no_context_takeover=1", "permessage-deflate; mystery",
                        "permessage-deflate; client_no_context_takeover; client_no_context_takeover"] {
            XCTAssertNil(PerMessageDeflate.negotiate(offer(invalid)), invalid)
        }
        XCTAssertEqual(
            PerMessageDeflate.negotiate(offer("foo, permessage-deflate; server_max_window_bits=9", "permessage-deflate"))?.responseHeader,
            "permessage-deflate; server_no_context_takeover"
        )
    }

    func testDeflatedMessagesInflateAndEndWithoutTheSyncFlushTail() throws {
        let deflater = try WebSocketDeflater(threshold: 1024)
        let text = ByteBuffer(string: "4" + String(repeating: "[\"chat\",{\"text\":\"hello\"}]", count: 100))
        let compressed = try XCTUnwrap(deflater.deflate(text))
        XCTAssertLessThan(compressed.readableBytes, text.readableBytes / 4)
        XCTAssertNotEqual(Array(compressed.readableBytesView.suffix(4)), PerMessageDeflate.tail)
        // The same bytes every time: no context carries over, so a broadcast frame can be shared.
        XCTAssertEqual(deflater.deflate(text), compressed)
        let inflater = try WebSocketInflater(resetsEachMessage: false)
        XCTAssertEqual(try inflater.inflate(compressed, limit: 1_000_000), text)
        XCTAssertEqual(try inflater.inflate(compressed, limit: 1_000_000), text)
    }

    /// A fan-out compresses once per frame: every recipient of a prepared broadcast message gets
    /// the same deflated frame, RSV1 set; a unicast message is compressed for its one recipient.
    func testABroadcastMessageIsDeflatedOnceForAllItsRecipients() throws {
        var configuration = EngineIOConfiguration()
        configuration.perMessageDeflateThreshold = 1024
        let compressors = EngineIOCompressors(configuration: configuration)
        let text = String(repeating: "[\"news\",\"fan-out\"]", count: 100)
        let message = EngineIOBroadcastEncoder.prepare([.text(text)])[0]
        let first = try XCTUnwrap(compressors.deflatedFrame(for: message))
        let second = try XCTUnwrap(compressors.deflatedFrame(for: message))
        XCTAssertTrue(first.sharesBytes(with: second))
        XCTAssertEqual(first.getInteger(at: first.readerIndex, as: UInt8.self), 0xC1)
        let unicast = try XCTUnwrap(compressors.deflatedFrame(for: .text(text)))
        XCTAssertEqual(unicast, first)
        XCTAssertFalse(unicast.sharesBytes(with: first))
        XCTAssertNil(compressors.deflatedFrame(for: EngineIOBroadcastEncoder.prepare([.text("short")])[0]))
        XCTAssertNil(EngineIOCompressors(configuration: EngineIOConfiguration()).deflatedFrame(for: message))
    }

    func testSmallAndIncompressibleMessagesAreSentAsTheyAre() throws {
        let deflater = try WebSocketDeflater(threshold: 1024)
        XCTAssertNil(deflater.deflate(ByteBuffer(string: String(repeating: "a", count: 1023))))
        XCTAssertNotNil(deflater.deflate(ByteBuffer(string: String(repeating: "a", count: 1024))))
        var generator = SystemRandomNumberGenerator()
        let noise = ByteBuffer(bytes: (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        XCTAssertNil(deflater.deflate(noise))
    }

    /// A client that keeps its context (browsers do) sends messages that refer to earlier ones.
    func testInflaterKeepsTheClientsContextAcrossMessages() throws {
        let client = try ZlibCompressor(algorithm: .deflate)
        func send(_ text: String) throws -> ByteBuffer {
            var input = ByteBuffer(string: text)
            var output = ByteBuffer()
            output.reserveCapacity(client.maxSize(from: input))
            try client.deflate(from: &input, to: &output, flush: .sync)
            output.moveWriterIndex(to: output.writerIndex - 4)
            return output
        }
        let message = String(repeating: "the same words again ", count: 20)
        let first = try send(message)
        let second = try send(message)
        XCTAssertLessThan(second.readableBytes, first.readableBytes)
        let inflater = try WebSocketInflater(resetsEachMessage: false)
        XCTAssertEqual(try inflater.inflate(first, limit: 10_000), ByteBuffer(string: message))
        XCTAssertEqual(try inflater.inflate(second, limit: 10_000), ByteBuffer(string: message))
    }

    func testInflationStopsAtTheLimitAndOnGarbage() throws {
        let deflater = try WebSocketDeflater(threshold: 0)
        let big = try XCTUnwrap(deflater.deflate(ByteBuffer(string: String(repeating: "z", count: 100_000))))
        XCTAssertThrowsError(try WebSocketInflater(resetsEachMessage: true).inflate(big, limit: 99_999)) { error in
            XCTAssertEqual(error as? WebSocketInflater.Failure, .tooLarge)
        }
        XCTAssertEqual(try WebSocketInflater(resetsEachMessage: true).inflate(big, limit: 100_000).readableBytes, 100_000)
        XCTAssertThrowsError(try WebSocketInflater(resetsEachMessage: true).inflate(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]), limit: 100)) { error in
            XCTAssertEqual(error as? WebSocketInflater.Failure, .corrupt)
        }
    }

    func testHTTPEncodingFollowsAcceptEncoding() {
        func encoding(_ value: String?) -> HTTPCompression.Encoding? {
            HTTPCompression.encoding(accepting: HTTPHeaders(value.map { [("Accept-Encoding", $0)] } ?? []))
        }
        XCTAssertNil(encoding(nil))
        XCTAssertNil(encoding("identity"))
        XCTAssertNil(encoding("br"))
        XCTAssertEqual(encoding("gzip, deflate, br"), .gzip)
        XCTAssertEqual(encoding("deflate"), .deflate)
        XCTAssertEqual(encoding("gzip;q=0.5, deflate"), .deflate)
        XCTAssertEqual(encoding("gzip;q=0, *"), .deflate)
        XCTAssertEqual(encoding("*"), .gzip)
        XCTAssertNil(encoding("gzip;q=0, deflate;q=0"))
    }

    func testHTTPBodiesCompressFromTheThresholdOnAndDecompress() throws {
        let compression = try HTTPCompression(threshold: 1024)
        let small = ByteBuffer(string: String(repeating: "x", count: 1023))
        XCTAssertNil(compression.compress([small], length: 1023, as: .gzip))
        let parts = [ByteBuffer(string: String(repeating: "4hello", count: 300)), ByteBuffer(bytes: [0x1E]),
                     ByteBuffer(string: String(repeating: "4world", count: 300))]
        let body = ByteBuffer(string: String(repeating: "4hello", count: 300) + "\u{1E}" + String(repeating: "4world", count: 300))
        for (encoding, algorithm) in [(HTTPCompression.Encoding.gzip, CompressionAlgorithm.gzip()), (.deflate, .zlib())] {
            var compressed = try XCTUnwrap(compression.compress(parts, length: body.readableBytes, as: encoding))
            XCTAssertLessThan(compressed.readableBytes, 200)
            XCTAssertEqual(try compressed.decompress(with: algorithm), body)
        }
    }
}
