import NIOCore

/// The benchmark's event argument, `{"t":SENT,"s":SEQUENCE,"p":"xxx…"}`: the send time (the
/// monotonic clock in nanoseconds, the same clock for every process on the machine) and a
/// sequence number, padded with `p` to the requested size.
enum Payload {
    static func make(sequence: Int, size: Int, sent: UInt64 = NIODeadline.now().uptimeNanoseconds) -> String {
        let head = "{\"t\":\(sent),\"s\":\(sequence),\"p\":\""
        let padding = max(0, size - head.utf8.count - 2)
        return head + String(repeating: "x", count: padding) + "\"}"
    }

    /// Reads the send time and sequence number out of a packet that carries a payload.
    static func read(_ packet: ByteBuffer) -> (sent: UInt64, sequence: Int)? {
        guard let sent = JSONScan.integer(named: "t", in: packet),
            let sequence = JSONScan.integer(named: "s", in: packet)
        else { return nil }
        return (UInt64(sent), Int(sequence))
    }
}

/// Finds `"name":` in JSON text and reads the value after it, without parsing the rest: the
/// load generator reads tens of thousands of packets a second on one core and needs only
/// these fields. Good enough for the packets this tool builds itself.
enum JSONScan {
    static func integer(named name: String, in buffer: ByteBuffer) -> Int64? {
        buffer.withUnsafeReadableBytes { bytes in
            guard var index = valueStart(of: name, in: bytes) else { return nil }
            var value: Int64 = 0
            var digits = 0
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                value = value &* 10 &+ Int64(bytes[index] - UInt8(ascii: "0"))
                index += 1
                digits += 1
            }
            return digits > 0 ? value : nil
        }
    }

    /// The last element of a packet's array when it is a string without escapes (the offset
    /// recovery appends): the characters between the last two quotes before the final "]".
    static func lastString(in buffer: ByteBuffer) -> String? {
        buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 3, bytes[bytes.count - 1] == UInt8(ascii: "]"), bytes[bytes.count - 2] == UInt8(ascii: "\"")
            else { return nil }
            let end = bytes.count - 2
            guard let start = bytes[..<end].lastIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: bytes[(start + 1)..<end], as: UTF8.self)
        }
    }

    static func string(named name: String, in buffer: ByteBuffer) -> String? {
        buffer.withUnsafeReadableBytes { bytes in
            guard let start = valueStart(of: name, in: bytes), start < bytes.count,
                bytes[start] == UInt8(ascii: "\"")
            else { return nil }
            guard let end = bytes[(start + 1)...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: bytes[(start + 1)..<end], as: UTF8.self)
        }
    }

    private static func valueStart(of name: String, in bytes: UnsafeRawBufferPointer) -> Int? {
        let key = Array("\"\(name)\":".utf8)
        guard bytes.count >= key.count else { return nil }
        var index = 0
        while index <= bytes.count - key.count {
            if bytes[index] == key[0] {
                var matched = 1
                while matched < key.count, bytes[index + matched] == key[matched] { matched += 1 }
                if matched == key.count { return index + key.count }
            }
            index += 1
        }
        return nil
    }
}
