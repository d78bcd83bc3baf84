/// Session and socket ids: 15 characters of the URL-safe base64 alphabet, 90 random bits.
///
/// Node's ids have 20 characters. 15 is the most a Swift `String` keeps inline, without a heap
/// allocation, and every connection holds two ids (its session's and its socket's) for its
/// whole life: the shorter form saves each idle connection about 160 bytes, while 90 bits stay
/// far out of reach of guessing.
public enum RandomID {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    public static let length = 15

    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        // 6 bits a character: 10 characters from the first word, 5 from the second.
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
