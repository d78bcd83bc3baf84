/// Session and socket ids: characters of the URL-safe base64 alphabet, 6 random bits each.
///
/// Engine.IO session ids have 15 characters (90 bits): 15 is the most a Swift `String` keeps
/// inline, without a heap allocation, and an id lives as long as its connection.
///
/// Socket.IO socket ids have Node's 20 characters (`base64id`, 120 bits), because the sharded
/// Redis adapter of Node routes by length: `looksLikeASocketId` (20 characters) decides that
/// an emit to one socket goes on the namespace channel every node hears rather than on a room
/// channel nobody subscribes. With 20-character ids, sidecast and Node nodes route an emit to a
/// socket of the other the same way. It costs one heap string per socket (about 80 bytes of
/// RSS per idle connection, see BENCHMARKS.md).
public enum RandomID {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    /// Engine.IO session ids.
    public static let length = 15
    /// Socket.IO socket ids, as long as Node's.
    public static let socketIDLength = 20

    public static func make(length: Int = RandomID.length) -> String {
        precondition(length <= 20, "two random words give 20 characters of 6 bits")
        var generator = SystemRandomNumberGenerator()
        // 6 bits a character: 10 characters from each word.
        let first: UInt64 = generator.next()
        let second: UInt64 = generator.next()
        return String(unsafeUninitializedCapacity: length) { characters in
            for index in 0..<length {
                let bits = index < 10 ? first >> (6 * UInt64(index)) : second >> (6 * UInt64(index - 10))
                characters[index] = alphabet[Int(bits & 63)]
            }
            return length
        }
    }
}
