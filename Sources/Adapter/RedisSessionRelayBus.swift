import EngineIO
import Logging
import NIOCore
import Redis

/// The session relay's bus over the node's Redis link: each node subscribes its own channel
/// (``SessionRelayWire/channel(prefix:node:)``), with classic pub/sub or, under
/// `--redis-sharded`, as a shard channel. Confined to the home loop, like the Redis client.
public final class RedisSessionRelayBus: SessionRelayBus {
    /// The node's Redis link, classic or sharded.
    public enum Link {
        case classic(RedisClient)
        case sharded(RedisShardedClient)
    }

    private let link: Link
    private let prefix: String
    private let node: RelayNode
    private let logger: Logger

    public init(link: Link, prefix: String, node: RelayNode, logger: Logger) {
        self.link = link
        self.prefix = prefix
        self.node = node
        self.logger = logger
    }

    /// Subscribes this node's channel; what arrives goes to `relay`.
    public func start(relay: NodeRelay) {
        let channel = SessionRelayWire.channel(prefix: prefix, node: node)
        let handler: (String, ByteBuffer) -> Void = { [logger] _, message in
            do {
                let (decoded, sender) = try SessionRelayWire.decode(message)
                relay.received(decoded, from: sender)
            } catch {
                logger.warning("skipping a malformed session relay message from Redis", metadata: ["channel": "\(channel)", "error": "\(error)"])
            }
        }
        switch link {
        case .classic(let redis): redis.subscribe(channel, handler: handler)
        case .sharded(let redis): redis.ssubscribe(channel, handler: handler)
        }
    }

    public func publish(_ message: SessionRelayMessage, to node: RelayNode) {
        let channel = SessionRelayWire.channel(prefix: prefix, node: node)
        let bytes = SessionRelayWire.encode(message, from: self.node)
        switch link {
        case .classic(let redis): redis.publish(channel, bytes)
        case .sharded(let redis): redis.spublish(channel, bytes)
        }
    }

    /// `PUBSUB NUMSUB` (`SHARDNUMSUB` under `--redis-sharded`) of `node`'s channel: only that
    /// node subscribes it. Fails while Redis does not answer.
    public func isListening(_ node: RelayNode) -> EventLoopFuture<Bool> {
        let channel = SessionRelayWire.channel(prefix: prefix, node: node)
        switch link {
        case .classic(let redis): return redis.subscriberCount(of: channel).map { $0 > 0 }
        case .sharded(let redis): return redis.shardSubscriberCount(of: channel).map { $0 > 0 }
        }
    }
}
