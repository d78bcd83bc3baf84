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
