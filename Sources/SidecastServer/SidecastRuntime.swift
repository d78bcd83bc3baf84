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

/// The object graph of one running node, built and used on its single event loop.
///
/// Engine.IO hands sessions to Socket.IO, Socket.IO hands activity to the bridge, the bridge
/// acts through the adapter: each layer only knows the one below it through a protocol.
final class SidecastRuntime {
    let engineIO: EngineIOServer
    let socketIO: SocketIOServer
    let adapter: Adapter
    let bridge: Bridge
    /// The cluster link; `nil` on a standalone node.
    let redis: RedisLifecycle?

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

    init(configuration: SidecastConfiguration, nodeID: String, eventLoop: EventLoop, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger

        var engineConfiguration = EngineIOConfiguration()
        engineConfiguration.path = configuration.path
        engineConfiguration.pingInterval = configuration.pingInterval
        engineConfiguration.pingTimeout = configuration.pingTimeout
        engineConfiguration.maxPayload = configuration.maxPayload
        engineConfiguration.isSecure = configuration.tls != nil
        do {
            engineConfiguration.allowedOrigins = try AllowedOrigins(configuration.corsOrigins)
        } catch {
            throw SidecastStartError(description: "--cors-origin: \(error)")
        }
        // Node's thresholds: smaller messages gain too little to pay for compressing.
        engineConfiguration.perMessageDeflateThreshold = configuration.perMessageDeflate ? 1024 : nil
        engineConfiguration.httpCompressionThreshold = configuration.httpCompression ? 1024 : nil
        engineIO = EngineIOServer(configuration: engineConfiguration, eventLoop: eventLoop, logger: logger)

        var socketConfiguration = SocketIOServerConfiguration()
        socketConfiguration.connectTimeout = configuration.connectTimeout
        socketConfiguration.maxBufferedBytes = configuration.maxBuffered
        socketIO = SocketIOServer(configuration: socketConfiguration, eventLoop: eventLoop, logger: logger)
        engineIO.delegate = socketIO

        if let redisConfiguration = try Self.redisClientConfiguration(configuration), configuration.redisSharded {
            let redis: RedisShardedClient
            do {
                redis = try RedisShardedClient(configuration: redisConfiguration, eventLoop: eventLoop, logger: logger)
            } catch {
                throw SidecastStartError(description: "--redis-sharded: \(error)")
            }
            self.redis = redis
            let transport = ShardedRedisTransport(
                redis: redis,
                uid: nodeID,
                prefix: configuration.redisPrefix,
                mode: configuration.redisSubscriptionMode,
                logger: logger
            )
            adapter = ClusterAdapter(
                server: socketIO, transport: transport, uid: nodeID, requestsTimeout: configuration.requestsTimeout, logger: logger
            )
        } else if let redisConfiguration = try Self.redisClientConfiguration(configuration) {
            let redis = RedisClient(configuration: redisConfiguration, eventLoop: eventLoop, logger: logger)
            self.redis = redis
            let transport = RedisPubSubTransport(redis: redis, uid: nodeID, prefix: configuration.redisPrefix, logger: logger)
            adapter = ClusterAdapter(
                server: socketIO, transport: transport, uid: nodeID, requestsTimeout: configuration.requestsTimeout, logger: logger
            )
        } else {
            redis = nil
            adapter = LocalAdapter(server: socketIO)
        }

        var bridgeConfiguration = BridgeConfiguration(nodeID: nodeID)
        bridgeConfiguration.namespaces = configuration.namespaces
        bridgeConfiguration.authorizedNamespaces = configuration.authorizedNamespaces
        bridgeConfiguration.backendGrace = configuration.backendGrace
        bridgeConfiguration.requestsTimeout = configuration.requestsTimeout
        bridge = Bridge(configuration: bridgeConfiguration, server: socketIO, adapter: adapter, logger: logger)
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
            engineIO.refuseNewSessions()
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
        socketIO.closeAll(reason: .serverShuttingDown)
        engineIO.closeAll(reason: .serverShuttingDown)
        bridge.shutdown()
        // Unsubscribing drops this node from the other nodes' count of servers at once.
        adapter.close()
        let flushed = redis?.shutdown() ?? engineIO.eventLoop.makeSucceededVoidFuture()
        flushed.assumeIsolated().whenComplete { [self] _ in finish() }
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
