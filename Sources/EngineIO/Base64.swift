import NIOCore

/// Base64 for binary packets in polling payloads ("b" + base64), written straight into and read
/// straight out of `ByteBuffer`s so no intermediate `Data`/`String` copy is made.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Maps an ASCII byte to its 6-bit value; 0xFF marks bytes outside both alphabets. Like
    /// Node's `Buffer.from(s, "base64")`, the URL-safe "-" and "_" are accepted too.
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(value) }
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        return table
    }()

    static func encodedLength(of count: Int) -> Int { (count + 2) / 3 * 4 }

    /// Appends the padded standard base64 form of `bytes` to `buffer`.
    static func encode(_ bytes: ByteBufferView, into buffer: inout ByteBuffer) {
        let count = bytes.count
        buffer.reserveCapacity(minimumWritableBytes: encodedLength(of: count))
        var index = bytes.startIndex
        let end = bytes.endIndex
        while end - index >= 3 {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            buffer.writeInteger(alphabet[Int(chunk >> 18)])
            buffer.writeInteger(alphabet[Int(chunk >> 12 & 0x3F)])
            buffer.writeInteger(alphabet[Int(chunk >> 6 & 0x3F)])
            buffer.writeInteger(alphabet[Int(chunk & 0x3F)])
            index += 3
        }
        let padEqual = UInt8(ascii: "=")
        switch end - index {
        case 1:
            let chunk = UInt32(bytes[index]) << 16
            buffer.writeInteger(alphabet[Int(chunk >> 18)])
            buffer.writeInteger(alphabet[Int(chunk >> 12 & 0x3F)])
            buffer.writeInteger(padEqual)
            buffer.writeInteger(padEqual)
        case 2:
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            buffer.writeInteger(alphabet[Int(chunk >> 18)])
            buffer.writeInteger(alphabet[Int(chunk >> 12 & 0x3F)])
            buffer.writeInteger(alphabet[Int(chunk >> 6 & 0x3F)])
            buffer.writeInteger(padEqual)
        default:
            break
        }
    }

    /// Decodes standard or URL-safe base64, padded or not. Returns nil for any other byte,
    /// for data after padding, or for an impossible length (one leftover character).
    static func decode(_ text: ByteBufferView) -> ByteBuffer? {
        var output = ByteBuffer()
        output.reserveCapacity(text.count / 4 * 3 + 2)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for byte in text {
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            let value = decodeTable[Int(byte)]
            guard value != 0xFF, padding == 0 else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.writeInteger(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        guard bits < 6, padding <= 2 else { return nil }
        return output
    }
}
