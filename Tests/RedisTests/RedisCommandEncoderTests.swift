import NIOCore
import NIOEmbedded
import XCTest

@testable import Redis

final class RedisCommandEncoderTests: XCTestCase {
    private func encode(_ command: RedisCommand) throws -> [UInt8] {
        var out = ByteBuffer()
        try RedisCommandEncoder.encode(command, into: &out)
        return Array(out.readableBytesView)
    }

    func testEncodesAPublishByteForByte() throws {
        let bytes = try self.encode(.publish("room", ByteBuffer(string: "hello")))
        XCTAssertEqual(bytes, Array("*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$5\r\nhello\r\n".utf8))
    }

    func testEncodesBinaryEmptyAndUnicodeArguments() throws {
        let binary: [UInt8] = [0, 13, 10, 255]
        let bytes = try self.encode(RedisCommand([ByteBuffer(string: "SET"), ByteBuffer(string: "ключ"), ByteBuffer(bytes: binary), ByteBuffer()]))
        var expected = Array("*4\r\n$3\r\nSET\r\n$8\r\nключ\r\n$4\r\n".utf8)
        expected += binary + Array("\r\n$0\r\n\r\n".utf8)
        XCTAssertEqual(bytes, expected)
    }

    func testEncodesOnlyTheReadableBytesOfAnArgument() throws {
        var argument = ByteBuffer(string: "xxpayload")
        argument.moveReaderIndex(forwardBy: 2)
        let bytes = try self.encode(RedisCommand([ByteBuffer(string: "ECHO"), argument]))
        XCTAssertEqual(bytes, Array("*2\r\n$4\r\nECHO\r\n$7\r\npayload\r\n".utf8))
    }

    func testEncodesALargeArgument() throws {
        let large = ByteBuffer(repeating: UInt8(ascii: "z"), count: 100_000)
        let bytes = try self.encode(RedisCommand([ByteBuffer(string: "ECHO"), large]))
        XCTAssertEqual(bytes.count, "*2\r\n$4\r\nECHO\r\n$100000\r\n".utf8.count + 100_000 + 2)
        XCTAssertEqual(Array(bytes.prefix(23)), Array("*2\r\n$4\r\nECHO\r\n$100000\r\n".utf8))
    }

    func testRefusesAnEmptyCommand() {
        XCTAssertThrowsError(try self.encode(RedisCommand([ByteBuffer]()))) { error in
            XCTAssertEqual(error as? RedisClientError, .emptyCommand)
        }
    }

    func testEncoderHandlerWritesTheBytes() throws {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(RedisCommandEncoder()))
        try channel.writeOutbound(RedisCommand(["PING"]))
        let written = try XCTUnwrap(channel.readOutbound(as: ByteBuffer.self))
        XCTAssertEqual(String(buffer: written), "*1\r\n$4\r\nPING\r\n")
        XCTAssertTrue(try channel.finish().isClean)
    }
}
