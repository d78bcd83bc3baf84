import NIOCore
import NIOWebSocket
import XCTest

@testable import EngineIO

final class WebSocketUnmaskingTests: XCTestCase {
    /// NIO's `unmaskedData` is the reference: every length around the eight-byte steps, every
    /// key offset the extension data can set, and a payload that starts inside a larger buffer.
    func testUnmaskedPayloadIsNIOsUnmaskedData() throws {
        let key = WebSocketMaskingKey([0x9a, 0x17, 0xe3, 0x40])
        for length in Array(0...40) + [1000, 65_537] {
            for extensionLength in 0..<4 {
                var whole = ByteBuffer(bytes: (0..<(length + 5)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
                whole.moveReaderIndex(forwardBy: 5)
                let extensionData = extensionLength == 0 ? nil : ByteBuffer(bytes: Array(repeating: 0xAB, count: extensionLength))
                let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: whole, extensionData: extensionData)
                XCTAssertEqual(frame.unmaskedPayload, frame.unmaskedData, "\(length) bytes, offset \(extensionLength)")
            }
        }
    }

    func testAnUnmaskedFrameKeepsItsData() {
        let data = ByteBuffer(string: "42[\"chat\"]")
        XCTAssertEqual(WebSocketFrame(fin: true, opcode: .text, data: data).unmaskedPayload, data)
    }

    /// The read buffer the frame came from is left as it was.
    func testTheFramesOwnBytesAreNotChanged() {
        let bytes: [UInt8] = Array(0..<20)
        let frame = WebSocketFrame(fin: true, opcode: .binary, maskKey: WebSocketMaskingKey([1, 2, 3, 4]), data: ByteBuffer(bytes: bytes))
        _ = frame.unmaskedPayload
        XCTAssertEqual(Array(frame.data.readableBytesView), bytes)
    }
}
