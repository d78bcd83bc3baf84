import NIOCore

/// What the server needs of either Redis client (classic or sharded pub/sub): to start it,
/// to know whether it is connected (readiness), and to shut it down once its outbox drained.
public protocol RedisLifecycle: AnyObject {
    var isConnected: Bool { get }
    func start()
    func shutdown() -> EventLoopFuture<Void>
}

extension RedisClient: RedisLifecycle {}
extension RedisShardedClient: RedisLifecycle {}

/// The Redis clients of one node run as one: with `--relay-sessions` over `--redis-streams`,
/// the stream client and the relay bus's own pub/sub client. Connected while every client is,
/// since the node needs both to serve its cluster. Confined to the clients' event loop.
public final class RedisLifecycleGroup: RedisLifecycle {
    private let members: [RedisLifecycle]
    private let eventLoop: EventLoop

    public init(_ members: [RedisLifecycle], eventLoop: EventLoop) {
        self.members = members
        self.eventLoop = eventLoop
    }

    public var isConnected: Bool { members.allSatisfy(\.isConnected) }

    public func start() {
        for member in members { member.start() }
    }

    /// Every client flushes its own outbox; done once all are.
    public func shutdown() -> EventLoopFuture<Void> {
        EventLoopFuture.andAllComplete(members.map { $0.shutdown() }, on: eventLoop)
    }
}
