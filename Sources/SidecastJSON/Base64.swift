import NIOCore

/// Standard base64 (RFC 4648 alphabet, `=` padding), the spelling of Node's
/// `buffer.toString("base64")` and `atob`/`btoa`.
///
/// Our own rather than Foundation's so that encoding can append straight into the `ByteBuffer`
/// being built and decoding can produce a `ByteBuffer` without going through `Data`.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Maps an ASCII byte to its 6-bit value; 0xFF marks bytes outside the alphabet.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// The number of characters `encode` produces for `count` bytes.
    public static func encodedLength(of count: Int) -> Int { (count + 2) / 3 * 4 }

    public static func encode(_ bytes: ByteBuffer) -> String {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(encodedLength(of: bytes.readableBytes))
        encode(bytes, into: &buffer)
        return String(buffer: buffer)
    }

    /// Appends the base64 spelling of the readable bytes of `bytes` to `buffer`.
    public static func encode(_ bytes: ByteBuffer, into buffer: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { encode($0, into: &buffer) }
    }

    public static func encode(_ bytes: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        let length = encodedLength(of: bytes.count)
        guard length > 0 else { return }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { output in
            alphabet.withUnsafeBufferPointer { table in
                var out = 0
                var index = 0
                while index + 3 <= bytes.count {
                    let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
                    output[out] = table[Int(chunk >> 18)]
                    output[out + 1] = table[Int(chunk >> 12 & 0x3F)]
                    output[out + 2] = table[Int(chunk >> 6 & 0x3F)]
                    output[out + 3] = table[Int(chunk & 0x3F)]
                    out += 4
                    index += 3
                }
                let remaining = bytes.count - index
                if remaining > 0 {
                    let second = remaining == 2 ? UInt32(bytes[index + 1]) : 0
                    let chunk = UInt32(bytes[index]) << 16 | second << 8
                    output[out] = table[Int(chunk >> 18)]
                    output[out + 1] = table[Int(chunk >> 12 & 0x3F)]
                    output[out + 2] = remaining == 2 ? table[Int(chunk >> 6 & 0x3F)] : UInt8(ascii: "=")
                    output[out + 3] = UInt8(ascii: "=")
                }
            }
            return length
        }
    }

    /// Decodes padded standard base64; `nil` when `text` is not exactly that (wrong length, a
    /// character outside the alphabet, misplaced padding or non-zero padding bits).
    public static func decode(_ text: some StringProtocol) -> ByteBuffer? {
        if let decoded = text.utf8.withContiguousStorageIfAvailable({ decode(UnsafeRawBufferPointer($0)) }) {
            return decoded
        }
        return Array(text.utf8).withUnsafeBytes { decode($0) }
    }

    public static func decode(_ text: UnsafeRawBufferPointer) -> ByteBuffer? {
        guard text.count % 4 == 0 else { return nil }
        guard text.count > 0 else { return ByteBuffer() }
        let padding = text[text.count - 1] == UInt8(ascii: "=") ? (text[text.count - 2] == UInt8(ascii: "=") ? 2 : 1) : 0
        let length = text.count / 4 * 3 - padding
        var result = ByteBuffer()
        let succeeded = values.withUnsafeBufferPointer { table -> Bool in
            var valid = true
            result.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { output in
                var out = 0
                var index = 0
                while index < text.count {
                    let isLast = index + 4 == text.count
                    let a = table[Int(text[index])]
                    let b = table[Int(text[index + 1])]
                    let c = isLast && padding == 2 ? 0 : table[Int(text[index + 2])]
                    let d = isLast && padding >= 1 ? 0 : table[Int(text[index + 3])]
                    guard (a | b | c | d) & 0xC0 == 0 else {
                        valid = false
                        return 0
                    }
                    let chunk = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    output[out] = UInt8(truncatingIfNeeded: chunk >> 16)
                    if out + 1 < length { output[out + 1] = UInt8(truncatingIfNeeded: chunk >> 8) }
                    if out + 2 < length { output[out + 2] = UInt8(truncatingIfNeeded: chunk) }
                    if isLast, padding == 2, chunk & 0xFFFF != 0 { valid = false }
                    if isLast, padding == 1, chunk & 0xFF != 0 { valid = false }
                    out += 3
                    index += 4
                }
                return valid ? length : 0
            }
            return valid
        }
        return succeeded ? result : nil
    }
}
