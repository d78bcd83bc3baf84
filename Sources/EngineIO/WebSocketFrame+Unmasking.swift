import NIOCore
import NIOWebSocket

extension WebSocketFrame {
    /// The payload, unmasked: NIO's `unmaskedData`, eight bytes at a time.
    ///
    /// A client's frame shares its storage with the connection's read buffer, so unmasking
    /// copies it either way. NIO's copies it and then unmasks it a byte at a time, about twenty
    /// instructions a byte (2,500 of a chat message's); this copies and unmasks in one pass.
    var unmaskedPayload: ByteBuffer {
        guard let key = self.maskKey else { return self.data }
        // As NIO does: the key runs on from the extension data, which comes first.
        let offset = (self.extensionData?.readableBytes ?? 0) % 4
        var word: UInt64 = 0
        for index in 0..<8 {
            word |= UInt64(key[(offset + index) % 4]) << (8 * index)
        }
        let data = self.data
        var payload = ByteBufferAllocator().buffer(capacity: data.readableBytes)
        payload.writeWithUnsafeMutableBytes(minimumWritableBytes: data.readableBytes) { target in
            data.withUnsafeReadableBytes { source in
                let count = source.count
                var index = 0
                while index + 8 <= count {
                    let masked = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                    target.storeBytes(of: (masked ^ word).littleEndian, toByteOffset: index, as: UInt64.self)
                    index += 8
                }
                while index < count {
                    target[index] = source[index] ^ key[(offset + index) % 4]
                    index += 1
                }
                return count
            }
        }
        return payload
    }
}
