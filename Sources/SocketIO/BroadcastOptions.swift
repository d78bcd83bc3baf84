/// Which sockets of a namespace a broadcast (or a selector such as `socketsJoin`) targets.
///
/// Rooms and socket ids share one name space: every socket is a member of the room named by its
/// own id, so "emit to one socket" is a broadcast to that room. An empty `rooms` means every
/// socket of the namespace.
public struct BroadcastOptions: Sendable, Hashable {
    public var namespace: String
    public var rooms: Set<String>
    public var except: Set<String>
    /// The event may be lost when a client can't take it right now (Socket.IO's `volatile`).
    public var volatile: Bool
    /// Deliver on this node only, never through the cluster adapter.
    public var local: Bool

    public init(
        namespace: String,
        rooms: Set<String> = [],
        except: Set<String> = [],
        volatile: Bool = false,
        local: Bool = false
    ) {
        self.namespace = namespace
        self.rooms = rooms
        self.except = except
        self.volatile = volatile
        self.local = local
    }
}
