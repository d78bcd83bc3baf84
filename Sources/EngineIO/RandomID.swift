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
///
/// On a node with several event loops, ids also say which loop's shard owns the session or
/// socket (``LoopShard``), so a request or a backend command can be handed to that shard
/// without a table shared by the loops.
///
/// With `--relay-sessions`, characters 2 to 5 of a session id also say which node made it
/// (``RelayNode``, 24 bits), so any node relays a request of that session to it.
public enum RandomID {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    /// Engine.IO session ids.
    public static let length = 15
    /// Socket.IO socket ids, as long as Node's.
    public static let socketIDLength = 20

    /// A random id of `length` characters whose first two say `shard`; with the only shard of
    /// a one-loop node they are as random as the rest. With `node`, the next four say the node
    /// (``RelayNode``).
    public static func make(length: Int = RandomID.length, shard: LoopShard = .only, node: RelayNode? = nil) -> String {
        precondition(length <= 20, "two random words give 20 characters of 6 bits")
        precondition(length >= 2, "the shard takes the first two characters")
        var generator = SystemRandomNumberGenerator()
        // 6 bits a character: 10 characters from each word.
        var first: UInt64 = generator.next()
        let second: UInt64 = generator.next()
        first = first & ~LoopShard.valueMask | shard.encode(random: first & LoopShard.valueMask)
        let id = String(unsafeUninitializedCapacity: length) { characters in
            for index in 0..<length {
                let bits = index < 10 ? first >> (6 * UInt64(index)) : second >> (6 * UInt64(index - 10))
                characters[index] = alphabet[Int(bits & 63)]
            }
            return length
        }
        guard let node else { return id }
        precondition(length == RandomID.length, "only session ids name their node")
        var characters = Array(id.utf8)
        characters.replaceSubrange(RelayNode.offset..<RelayNode.offset + RelayNode.length, with: node.tag.utf8)
        return String(decoding: characters, as: UTF8.self)
    }
}

/// One event loop's share of a node: the sessions, sockets and rooms of the clients whose
/// connections that loop serves. A node on one loop has the only shard, `.only`.
///
/// The shard is written into every session and socket id: the first two characters (12 bits)
/// hold a value `v` with `v % count == index`. Routing a request or a backend command to its
/// shard reads two characters, with no table shared between loops; the id keeps its length
/// (Node's 20 characters for sockets) and loses `log2(count)` of its random bits.
public struct LoopShard: Sendable, Hashable, CustomStringConvertible {
    /// How many shards two id characters can tell apart.
    public static let maximumCount = 4096
    /// The bits of the first random word the first two characters come from.
    static let valueMask: UInt64 = 0xFFF

    /// This shard's position, `0..<count`.
    public let index: Int
    /// The node's number of shards (its event loops).
    public let count: Int

    public init(index: Int, count: Int) {
        precondition(count >= 1 && count <= Self.maximumCount, "1...\(Self.maximumCount) shards")
        precondition(index >= 0 && index < count, "a shard index is below the count")
        self.index = index
        self.count = count
    }

    /// The shard of a node on one event loop.
    public static let only = LoopShard(index: 0, count: 1)

    /// Which of `count` shards owns the session or socket `id`; nil when `id` is not one of
    /// ours (too short, or a character outside the alphabet), as a backend may send anything.
    public static func index(of id: some StringProtocol, count: Int) -> Int? {
        var characters = id.utf8.makeIterator()
        guard let first = characters.next().flatMap(RandomID.value(of:)),
              let second = characters.next().flatMap(RandomID.value(of:))
        else { return nil }
        return Int((first | second << 6) % UInt64(count))
    }

    /// 12 random bits turned into a value of this shard: the same multiple of `count`, plus
    /// `index`, stepped back by one `count` where that passes the 12 bits.
    func encode(random: UInt64) -> UInt64 {
        let count = UInt64(self.count)
        let value = random - random % count + UInt64(index)
        return value > LoopShard.valueMask ? value - count : value
    }

    public var description: String { "\(index)/\(count)" }
}

extension RandomID {
    /// The 6-bit value of an id character; nil for one outside the alphabet.
    static func value(of character: UInt8) -> UInt64? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return UInt64(character - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return UInt64(character - UInt8(ascii: "a") + 26)
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt64(character - UInt8(ascii: "0") + 52)
        case UInt8(ascii: "-"): return 62
        case UInt8(ascii: "_"): return 63
        default: return nil
        }
    }
}
