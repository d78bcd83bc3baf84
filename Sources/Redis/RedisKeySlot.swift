/// The Redis Cluster hash slot of a key or shard channel: CRC16 (XMODEM) of the key, or of its
/// hash tag, modulo 16384.
///
/// A hash tag is the text between the first `{` and the first `}` after it, when not empty:
/// `{user1000}.following` and `{user1000}.followers` share a slot.
public enum RedisKeySlot {
    public static let count = 16384

    public static func slot(of key: String) -> Int {
        var bytes = Array(key.utf8)[...]
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
            close > open + 1
        {
            bytes = bytes[(open + 1)..<close]
        }
        return Int(crc16(bytes)) % count
    }

    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// CRC16-CCITT, polynomial 0x1021, one entry per leading byte.
    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
