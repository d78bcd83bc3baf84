/// The Redis channel names `@socket.io/redis-adapter` 8.x uses for one namespace.
///
/// A node `PSUBSCRIBE`s `broadcastPattern` and `SUBSCRIBE`s `request`, `response` and
/// `response(uid:)` with its own uid. Broadcasts go to `broadcast`, or to `room(_:)` when they
/// target exactly one room, so a node can drop a message for a room it doesn't hold from the
/// channel name alone (see `broadcastTarget(ofChannel:)`). Requests go to `request`; answers go
/// to `response`, or to the requester's `response(uid:)` when the answering node runs with
/// `publishOnSpecificResponseChannel` (off by default in 8.x).
public struct RedisChannels: Sendable, Hashable {
    public static let defaultPrefix = "socket.io"

    /// The adapter's `key` option.
    public var prefix: String
    /// The namespace name, starting with "/".
    public var namespace: String

    public init(prefix: String = RedisChannels.defaultPrefix, namespace: String) {
        self.prefix = prefix
        self.namespace = namespace
    }

    /// `socket.io#/nsp#`: broadcasts to the whole namespace, or to several rooms.
    public var broadcast: String { "\(prefix)#\(namespace)#" }

    /// `socket.io#/nsp#room#`: broadcasts to exactly one room.
    public func room(_ room: String) -> String { "\(broadcast)\(room)#" }

    /// `socket.io#/nsp#*`: the one pattern that receives both kinds of broadcast channel.
    public var broadcastPattern: String { "\(broadcast)*" }

    /// `socket.io-request#/nsp#`: every request, JSON or msgpack. `PUBSUB NUMSUB` on this
    /// channel is how the adapter counts the servers of the cluster.
    public var request: String { "\(prefix)-request#\(namespace)#" }

    /// `socket.io-response#/nsp#`: answers, by default all of them.
    public var response: String { "\(prefix)-response#\(namespace)#" }

    /// `socket.io-response#/nsp#<uid>#`: answers addressed to the node `uid` only.
    public func response(uid: String) -> String { "\(response)\(uid)#" }

    /// The channels a node with this `uid` `SUBSCRIBE`s to, in the order the Node adapter does.
    public func subscriptions(uid: String) -> [String] { [request, response, response(uid: uid)] }

    /// Where a broadcast to `rooms` is published: the room's own channel when there is exactly
    /// one room, else the namespace channel.
    public func broadcastChannel(rooms: [String]) -> String {
        rooms.count == 1 ? room(rooms[0]) : broadcast
    }

    /// What a channel delivered by `broadcastPattern` targets, from its name alone.
    ///
    /// `nil` when the channel is not a broadcast channel of this namespace. The pattern also
    /// matches channels of namespaces whose name extends this one's with "#"; like Node, this
    /// can't tell those apart from a room, so the packet's namespace must still be checked
    /// after decoding.
    public func broadcastTarget(ofChannel channel: String) -> RedisBroadcastTarget? {
        let prefix = broadcast
        guard channel.utf8.starts(with: prefix.utf8) else { return nil }
        // Node drops the last character whatever it is (`slice(prefix.length, -1)`).
        let room = String(Substring(channel.utf8.dropFirst(prefix.utf8.count)).dropLast())
        return room.isEmpty ? .namespace : .room(room)
    }
}

/// The audience a broadcast channel names.
public enum RedisBroadcastTarget: Sendable, Hashable {
    /// The namespace channel: the message says in its options which sockets it targets.
    case namespace
    /// A single-room channel: a node without a socket in `room` can drop the message undecoded.
    case room(String)
}
