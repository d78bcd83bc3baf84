import Adapter
import Bridge
import EngineIO
import Logging
import NIOCore
import Redis
import SocketIO

/// How a node was asked to stop.
enum StopRequest {
    /// SIGTERM or the service group's graceful shutdown: report "draining" for the drain delay
    /// before closing clients, so a load balancer stops sending new ones first.
    case terminate
    /// SIGINT or task cancellation: close clients at once.
    case interrupt
}

/// One event loop's share of the node: its Engine.IO and Socket.IO servers, which own the
/// sessions, sockets and rooms of the clients that loop serves.
struct Shard: Sendable {
    let engineIO: NIOLoopBound<EngineIOServer>
    let socketIO: NIOLoopBound<SocketIOServer>

    var eventLoop: EventLoop { engineIO.eventLoop }

    /// Shard `index` of `count`. Call on `loop`.
    init(index: Int, count: Int, configuration: SidecastConfiguration, loop: EventLoop, logger: Logger) throws {
        let shard = LoopShard(index: index, count: count)
        var engineConfiguration = EngineIOConfiguration()
        engineConfiguration.path = configuration.path
        engineConfiguration.pingInterval = configuration.pingInterval
        engineConfiguration.pingTimeout = configuration.pingTimeout
        engineConfiguration.maxPayload = configuration.maxPayload
        engineConfiguration.allowEIO3 = configuration.allowEIO3
        engineConfiguration.isSecure = configuration.tls != nil
        do {
            engineConfiguration.allowedOrigins = try AllowedOrigins(configuration.corsOrigins)
        } catch {
            throw SidecastStartError(description: "--cors-origin: \(error)")
        }
        // Node's thresholds: smaller messages gain too little to pay for compressing.
        engineConfiguration.perMessageDeflateThreshold = configuration.perMessageDeflate ? 1024 : nil
        engineConfiguration.httpCompressionThreshold = configuration.httpCompression ? 1024 : nil
        engineConfiguration.shard = shard
        let engineIO = EngineIOServer(configuration: engineConfiguration, eventLoop: loop, logger: logger)

        var socketConfiguration = SocketIOServerConfiguration()
        socketConfiguration.connectTimeout = configuration.connectTimeout
        socketConfiguration.maxBufferedBytes = configuration.maxBuffered
        socketConfiguration.parser = configuration.parser
        socketConfiguration.shard = shard
        if configuration.recoveryWindow > .zero {
            socketConfiguration.recovery = RecoveryConfiguration(
                window: configuration.recoveryWindow, skipAuthorization: configuration.recoverySkipAuthorization
            )
        }
        let socketIO = SocketIOServer(configuration: socketConfiguration, eventLoop: loop, logger: logger)
        engineIO.delegate = socketIO
        self.engineIO = NIOLoopBound(engineIO, eventLoop: loop)
        self.socketIO = NIOLoopBound(socketIO, eventLoop: loop)
    }
}

/// The object graph of one running node, built and used on its home event loop (the first
/// shard's).
///
/// Engine.IO hands sessions to Socket.IO, Socket.IO hands activity to the bridge, the bridge
/// acts through the adapter: each layer only knows the one below it through a protocol. On a
/// node of several loops every shard has its own Engine.IO and Socket.IO servers; the bridge,
/// the adapter and Redis are the home loop's, and reach the shards through `NodeShards`.
final class SidecastRuntime {
    let shards: [Shard]
    /// The home shard's servers.
    let engineIO: EngineIOServer
    let socketIO: SocketIOServer
    let adapter: Adapter
    let bridge: Bridge
    /// The cluster link; `nil` on a standalone node.
    let redis: RedisLifecycle?
    /// With `--relay-sessions`: relays requests of other nodes' sessions, and serves this
    /// node's that reached others.
    let relay: NodeRelay?

    private let configuration: SidecastConfiguration
    private let logger: Logger
    private var phase = Phase.serving
    /// Forces the end of a drain that outlasts the drain timeout.
    private var deadline: Scheduled<Void>?
    /// Made once the node listens; completed when it has stopped.
    private var stoppedPromise: EventLoopPromise<Void>?

    /// Where a stop request has got to. Every request lands here on the event loop, so
    /// signals, the service group and cancellation need no coordination of their own.
    private enum Phase {
        case serving
        /// New sessions are refused; clients are closed when `delay` fires.
        case draining(delay: Scheduled<Void>)
        /// Clients are closed and the Redis outbox is being flushed.
        case closing
        case stopped
    }

    /// Call on the first shard's loop, the home loop.
    init(configuration: SidecastConfiguration, nodeID: String, shards: [Shard], logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.shards = shards
        let eventLoop = shards[0].eventLoop
        engineIO = shards[0].engineIO.value
        socketIO = shards[0].socketIO.value
        let nodeShards = NodeShards(servers: shards.map(\.socketIO))
        var store: SessionStore?
        var relayLink: RedisSessionRelayBus.Link?

        if let redisConfiguration = try Self.redisClientConfiguration(configuration), configuration.redisSharded {
            let redis: RedisShardedClient
            do {
                redis = try RedisShardedClient(configuration: redisConfiguration, eventLoop: eventLoop, logger: logger)
            } catch {
                throw SidecastStartError(description: "--redis-sharded: \(error)")
            }
            self.redis = redis
            relayLink = .sharded(redis)
            let transport = ShardedRedisTransport(
                redis: redis,
                uid: nodeID,
                prefix: configuration.redisPrefix,
                mode: configuration.redisSubscriptionMode,
                logger: logger
            )
            adapter = ClusterAdapter(
                shards: nodeShards, transport: transport, uid: nodeID, requestsTimeout: configuration.requestsTimeout, logger: logger
            )
        } else if let redisConfiguration = try Self.redisClientConfiguration(configuration), configuration.redisStreams {
            // Entries are numbered per uid, which the node id, fresh per process, makes one writer's.
            let stream = RedisStreamConfiguration(
                name: configuration.redisStreamName, maxLength: configuration.redisStreamMaxLen, readCount: configuration.redisStreamReadCount,
                writerField: "uid"
            )
            let redis: RedisStreamClient
            do {
                redis = try RedisStreamClient(configuration: redisConfiguration, stream: stream, eventLoop: eventLoop, logger: logger)
            } catch {
                throw SidecastStartError(description: "--redis-streams: \(error)")
            }
            if configuration.relaySessions {
                // The stream has no channel to relay over: the bus gets a pub/sub client of its
                // own to the same server, run with the stream client as one.
                var relayLogger = logger
                relayLogger[metadataKey: "redis.client"] = "session-relay"
                let relayRedis = RedisClient(configuration: redisConfiguration, eventLoop: eventLoop, gaugePrefix: "sidecast_relay_redis", logger: relayLogger)
                relayLink = .classic(relayRedis)
                self.redis = RedisLifecycleGroup([redis, relayRedis], eventLoop: eventLoop)
            } else {
                self.redis = redis
            }
            let transport = RedisStreamsTransport(redis: redis, uid: nodeID, logger: logger)
            if configuration.recoveryWindow > .zero {
                // On the stream, which every node reads: a session comes back on any node.
                let streamStore = RedisStreamSessionStore(
                    redis: redis, window: configuration.recoveryWindow, keyPrefix: configuration.redisSessionKeyPrefix, logger: logger
                )
                transport.keepOffsets(in: streamStore)
                store = streamStore
            }
            adapter = ClusterAdapter(
                shards: nodeShards, transport: transport, uid: nodeID, requestsTimeout: configuration.requestsTimeout, logger: logger
            )
        } else if let redisConfiguration = try Self.redisClientConfiguration(configuration) {
            let redis = RedisClient(configuration: redisConfiguration, eventLoop: eventLoop, logger: logger)
            self.redis = redis
            relayLink = .classic(redis)
            let transport = RedisPubSubTransport(redis: redis, uid: nodeID, prefix: configuration.redisPrefix, logger: logger)
            adapter = ClusterAdapter(
                shards: nodeShards, transport: transport, uid: nodeID, requestsTimeout: configuration.requestsTimeout, logger: logger
            )
        } else {
            redis = nil
            adapter = LocalAdapter(shards: nodeShards)
        }

        if configuration.recoveryWindow > .zero {
            // In memory on a standalone node and on classic and sharded Redis nodes alike: each
            // node numbers and keeps what its own clients were sent (PROTOCOL.md §13).
            nodeShards.enableRecovery(store: store ?? MemorySessionStore(
                window: configuration.recoveryWindow, maxPackets: configuration.recoveryMaxPackets, eventLoop: eventLoop
            ))
        }

        var bridgeConfiguration = BridgeConfiguration(nodeID: nodeID)
        bridgeConfiguration.namespaces = configuration.namespaces
        bridgeConfiguration.authorizedNamespaces = configuration.authorizedNamespaces
        bridgeConfiguration.backendGrace = configuration.backendGrace
        bridgeConfiguration.requestsTimeout = configuration.requestsTimeout
        bridge = Bridge(configuration: bridgeConfiguration, shards: nodeShards, adapter: adapter, logger: logger)
        if configuration.relaySessions, let relayLink {
            let node = RelayNode.random()
            let relay = NodeRelay(
                node: node, eventLoop: eventLoop, timeout: configuration.requestsTimeout,
                holdLimit: configuration.pingInterval + configuration.pingTimeout, logger: logger
            )
            let bus = RedisSessionRelayBus(link: relayLink, prefix: configuration.redisPrefix, node: node, logger: logger)
            relay.bus = bus
            bus.start(relay: relay)
            self.relay = relay
        } else {
            relay = nil
        }
        redis?.start()
    }

    /// The Redis client's settings for whichever of `--redis`, `--redis-sentinel` and
    /// `--redis-cluster` is given; nil for a standalone node.
    private static func redisClientConfiguration(_ configuration: SidecastConfiguration) throws -> RedisClientConfiguration? {
        do {
            if !configuration.redisSentinels.isEmpty {
                guard !configuration.redisMasterName.isEmpty else {
                    throw SidecastStartError(description: "--redis-sentinel needs --redis-master, the name Sentinel monitors the master under")
                }
                let sentinels = try configuration.redisSentinels.map { try RedisEndpoint($0, defaultPort: 26379) }
                return RedisClientConfiguration(
                    url: try credentials(configuration.redisPassword),
                    topology: .sentinel(masterName: configuration.redisMasterName, sentinels: sentinels),
                    sentinelUser: configuration.redisSentinelUsername,
                    sentinelPassword: configuration.redisSentinelPassword
                )
            }
            if !configuration.redisClusterNodes.isEmpty {
                let seeds = try configuration.redisClusterNodes.map { try RedisEndpoint($0, defaultPort: RedisURL.defaultPort) }
                return RedisClientConfiguration(url: try credentials(configuration.redisPassword), topology: .cluster(seeds: seeds))
            }
        } catch let error as RedisURLError {
            throw SidecastStartError(description: "--redis-sentinel/--redis-cluster: \(error)")
        }
        guard let url = configuration.redisURL else { return nil }
        do {
            return RedisClientConfiguration(url: try RedisURL(url))
        } catch {
            throw SidecastStartError(description: "--redis \(url): \(error)")
        }
    }

    /// A URL that carries only the data nodes' password: their addresses come from Sentinel or
    /// from the cluster.
    private static func credentials(_ password: String?) throws -> RedisURL {
        var url = try RedisURL("redis://localhost")
        url.password = password.flatMap { $0.isEmpty ? nil : $0 }
        return url
    }

    /// Marks the node ready as far as listening goes; the future completes once clients are
    /// closed, backends told and the Redis outbox flushed, or when the drain timeout forced the
    /// end (at once if a stop request came while starting and has already run its course).
    func didStartListening() -> EventLoopFuture<Void> {
        let promise = engineIO.eventLoop.makePromise(of: Void.self)
        stoppedPromise = promise
        if case .stopped = phase { promise.succeed() }
        return promise.futureResult
    }

    /// Why /readyz should say no; empty when the node takes new clients.
    func notReadyReasons() -> [String] {
        var reasons: [String] = []
        if stoppedPromise == nil { reasons.append("not listening") }
        if case .serving = phase {} else { reasons.append("draining") }
        if let redis, !redis.isConnected { reasons.append("redis disconnected") }
        if configuration.requireBackend {
            let namespaces = configuration.namespaces.union(configuration.authorizedNamespaces)
            for namespace in namespaces.sorted() where !bridge.hasBackend(serving: namespace) {
                reasons.append("no backend for namespace \(namespace)")
            }
        }
        return reasons
    }

    /// Starts draining, or moves an ongoing drain along: an interrupt during the drain delay
    /// ends the delay (a second Ctrl-C), a repeated terminate does not.
    func requestStop(_ request: StopRequest) {
        let loop = engineIO.eventLoop.assumeIsolated()
        switch phase {
        case .serving:
            forEachShard { $0.engineIO.value.refuseNewSessions() }
            // Leaves a little of the timeout for closing the listeners afterwards.
            let allowance = min(configuration.drainTimeout, .milliseconds(500))
            deadline = loop.scheduleTask(in: configuration.drainTimeout - allowance) { [self] in forceStop() }
            let delay: TimeAmount = request == .terminate ? configuration.drainDelay : .zero
            guard delay > .zero else {
                logger.info("shutting down: closing clients")
                closeClients()
                return
            }
            logger.info("draining: refusing new clients, closing the others after the drain delay", metadata: [
                "delay": "\(delay.nanoseconds / 1_000_000) ms",
            ])
            phase = .draining(delay: loop.scheduleTask(in: delay) { [self] in
                guard case .draining = phase else { return }
                closeClients()
            })
        case .draining(let delay) where request == .interrupt:
            logger.info("interrupted: closing clients without waiting for the drain delay")
            delay.cancel()
            closeClients()
        case .draining, .closing, .stopped:
            break
        }
    }

    /// Closes every client with "server shutting down", tells the backends, then lets the
    /// Redis outbox drain.
    private func closeClients() {
        phase = .closing
        let home = engineIO.eventLoop
        let closed = shards.map { shard in
            let close: @Sendable () -> Void = {
                shard.socketIO.value.closeAll(reason: .serverShuttingDown)
                shard.engineIO.value.closeAll(reason: .serverShuttingDown)
            }
            if shard.eventLoop === home {
                close()
                return home.makeSucceededVoidFuture()
            }
            return shard.eventLoop.submit(close)
        }
        // The backends are told after every shard closed its clients: the disconnects those
        // shards handed to the bridge are queued on this loop before the end of the wait.
        EventLoopFuture.andAllComplete(closed, on: home).assumeIsolated().whenComplete { [self] _ in
            bridge.shutdown()
            // Unsubscribing drops this node from the other nodes' count of servers at once.
            adapter.close()
            // The relay's last messages (closes of relayed WebSockets) go before Redis closes.
            let relayed = relay?.flush() ?? home.makeSucceededVoidFuture()
            relayed.assumeIsolated().flatMap { [self] in
                redis?.shutdown() ?? home.makeSucceededVoidFuture()
            }.whenComplete { [self] _ in finish() }
        }
    }

    /// Runs `body` on every shard's loop: at once for the home shard, handed over for others.
    private func forEachShard(_ body: @escaping @Sendable (Shard) -> Void) {
        for shard in shards {
            if shard.eventLoop === engineIO.eventLoop {
                body(shard)
            } else {
                shard.eventLoop.execute { body(shard) }
            }
        }
    }

    /// The drain timeout passed: clients are closed if they were not yet, and what is still
    /// pending (the Redis flush) is abandoned to the closing of the listeners.
    private func forceStop() {
        switch phase {
        case .draining(let delay):
            logger.warning("drain timeout reached during the drain delay; closing clients now")
            delay.cancel()
            closeClients()
        case .closing:
            logger.warning("drain timeout reached; stopping without waiting for the Redis flush")
        case .serving, .stopped:
            break
        }
        finish()
    }

    private func finish() {
        if case .stopped = phase { return }
        phase = .stopped
        deadline?.cancel()
        stoppedPromise?.succeed()
    }
}
