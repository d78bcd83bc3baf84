import NIOCore
import XCTest

@testable import Bridge

final class NDJSONFrameDecoderTests: XCTestCase {
    private func frames(_ chunks: [String], max: Int = 16) -> ([NDJSONFrame], ByteBuffer) {
        var decoder = NDJSONFrameDecoder(maxLineLength: max)
        var buffer = ByteBuffer()
        var result: [NDJSONFrame] = []
        for chunk in chunks {
            buffer.writeString(chunk)
            while let frame = decoder.nextFrame(&buffer) { result.append(frame) }
        }
        return (result, buffer)
    }

    func testSplitsLinesAcrossChunks() {
        let (result, rest) = frames(["{\"a\":1}\n{\"b\"", ":2}\r\n{\"c\""])
        XCTAssertEqual(result, [.line(ByteBuffer(string: "{\"a\":1}")), .line(ByteBuffer(string: "{\"b\":2}"))])
        XCTAssertEqual(rest.readableBytes, 4)
    }

    func testSkipsAnOversizedLineAndKeepsTheNext() {
        let (result, rest) = frames(["0123456789", "0123456789", "01234\n{\"ok\":1}\n"], max: 16)
        XCTAssertEqual(result, [.tooLong(bytes: 25), .line(ByteBuffer(string: "{\"ok\":1}"))])
        XCTAssertEqual(rest.readableBytes, 0)
    }

    func testOversizedLineInOneChunk() {
        let (result, _) = frames([String(repeating: "x", count: 40) + "\nA\n"], max: 16)
        XCTAssertEqual(result, [.tooLong(bytes: 40), .line(ByteBuffer(string: "A"))])
    }

    func testEmptyLinesAreReportedEmpty() {
        let (result, _) = frames(["\n\n"])
        XCTAssertEqual(result, [.line(ByteBuffer()), .line(ByteBuffer())])
    }
}
