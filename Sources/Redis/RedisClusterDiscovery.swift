import Logging
import NIOCore

/// Keeps the list of a Redis Cluster's nodes and picks the one the client's links use.
///
/// Classic pub/sub in a cluster reaches every node, so any reachable node will do; a master is
/// preferred, and the links share one node. A node whose connection failed is avoided for a
/// while, and the list is read again (`CLUSTER NODES`) after failures and on a timer.
///
/// Confined to the client's event loop.
final class RedisClusterDiscovery {
    private let seeds: [RedisEndpoint]
    private let credentials: RedisURL
    private let eventLoop: EventLoop
    private let timeout: TimeAmount
    private let refreshInterval: TimeAmount
    private let logger: Logger

    /// From the last `CLUSTER NODES`; the seeds, taken for masters, until one answers.
    private(set) var nodes: [RedisClusterNode]
    /// Nodes whose connection failed here, avoided until the deadline.
    private var suspects: [RedisEndpoint: NIODeadline] = [:]
    /// The node both links use while it works.
    private var current: RedisEndpoint?
    private var refreshing: EventLoopFuture<Void>?
    private var refreshTimer: Scheduled<Void>?
    /// Until a node answered `CLUSTER NODES`, the roles are unknown and a replica could be chosen.
    private var listed = false
    /// Called after every node list read, so the client can keep a link to each node.
    var onUpdate: (() -> Void)?

    init(seeds: [RedisEndpoint], credentials: RedisURL, eventLoop: EventLoop, timeout: TimeAmount, refreshInterval: TimeAmount, logger: Logger) {
        precondition(!seeds.isEmpty, "Cluster mode needs at least one seed node")
        self.seeds = seeds
        self.credentials = credentials
        self.eventLoop = eventLoop
        self.timeout = timeout
        self.refreshInterval = refreshInterval
        self.logger = logger
        self.nodes = seeds.map { RedisClusterNode(endpoint: $0, isMaster: true, isFailing: false) }
    }

    /// Reads the node list now and then every refresh interval until ``stop()``.
    func start() {
        _ = self.refresh()
        self.refreshTimer = self.eventLoop.assumeIsolated().scheduleTask(in: self.refreshInterval) { self.start() }
    }

    func stop() {
        self.refreshTimer?.cancel()
        self.refreshTimer = nil
    }

    /// The node for a link's next attempt, once the node list was read (or could not be); a
    /// failed node is set aside and the list read again.
    func target(failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        if self.listed {
            return self.eventLoop.makeSucceededFuture(self.choose(failed: failed))
        }
        return self.refresh().assumeIsolated().map { self.choose(failed: failed) }.recover { _ in self.choose(failed: failed) }.nonisolated()
    }

    private func choose(failed: RedisTarget?) -> RedisTarget {
        if let endpoint = failed?.url.endpoint {
            self.suspects[endpoint] = .now() + self.refreshInterval * 2
            if self.current == endpoint { self.current = nil }
            _ = self.refresh()
        }
        let now = NIODeadline.now()
        self.suspects = self.suspects.filter { $0.value > now }
        if let current = self.current, self.suspects[current] == nil {
            return RedisTarget(url: current.url(loggingInAs: self.credentials))
        }
        let healthy = self.nodes.filter { !$0.isFailing && self.suspects[$0.endpoint] == nil }
        let masters = healthy.filter(\.isMaster)
        // Random among equals, so that nodes starting together spread over the cluster; when
        // every node is in doubt, try any of them (or the seeds) rather than none.
        let chosen = masters.randomElement() ?? healthy.randomElement() ?? self.nodes.randomElement() ?? self.seeds.randomElement().map {
            RedisClusterNode(endpoint: $0, isMaster: true, isFailing: false)
        }
        let endpoint = chosen?.endpoint ?? self.seeds[0]
        if endpoint != self.current {
            self.logger.info("using Redis Cluster node", metadata: [
                "redis.node": "\(endpoint)", "redis.node-role": "\(chosen?.isMaster == true ? "master" : "replica")",
                "redis.known-nodes": "\(self.nodes.count)",
            ])
        }
        self.current = endpoint
        return RedisTarget(url: endpoint.url(loggingInAs: self.credentials))
    }

    /// Every node the last list names as reachable, to ask each for its subscribers.
    var reachableNodes: [RedisEndpoint] {
        self.nodes.filter { !$0.isFailing }.map(\.endpoint)
    }

    /// Takes the node list from a `CLUSTER NODES` reply.
    func update(_ reply: RedisReply, reportedBy reporter: RedisEndpoint) throws {
        guard let text = reply.string else {
            throw RedisClientError.protocolError("unexpected CLUSTER NODES answer: \(reply)")
        }
        let nodes = RedisClusterNode.parse(text, reportedBy: reporter)
        guard !nodes.isEmpty else {
            throw RedisClientError.protocolError("CLUSTER NODES named no node")
        }
        if Set(nodes) != Set(self.nodes) {
            self.logger.debug("Redis Cluster nodes", metadata: [
                "redis.masters": "\(nodes.filter { $0.isMaster && !$0.isFailing }.map { "\($0.endpoint)" })",
                "redis.failing": "\(nodes.filter(\.isFailing).map { "\($0.endpoint)" })",
            ])
        }
        self.nodes = nodes
        self.listed = true
        self.onUpdate?()
    }

    /// Asks the nodes in turn, the current one first, for the node list; shared while in flight.
    func refresh() -> EventLoopFuture<Void> {
        if let refreshing = self.refreshing { return refreshing }
        var candidates = (self.current.map { [$0] } ?? []) + self.reachableNodes + self.seeds
        var seen = Set<RedisEndpoint>()
        candidates = candidates.filter { seen.insert($0).inserted }
        let future = self.refresh(from: candidates[...])
        self.refreshing = future
        future.assumeIsolated().whenComplete { _ in self.refreshing = nil }
        return future
    }

    private func refresh(from candidates: ArraySlice<RedisEndpoint>) -> EventLoopFuture<Void> {
        guard let node = candidates.first else {
            self.logger.debug("no Redis Cluster node answered CLUSTER NODES")
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        return RedisProbe.send(
            [RedisCommand(["CLUSTER", "NODES"])], to: node.url(loggingInAs: self.credentials),
            on: self.eventLoop, timeout: self.timeout, logger: self.logger
        )
        .assumeIsolated()
        .flatMapThrowing { replies in
            guard let reply = replies.first else { throw RedisClientError.connectionClosed }
            try self.update(reply, reportedBy: node)
        }
        .flatMapError { _ in self.refresh(from: candidates.dropFirst()) }
        .nonisolated()
    }
}
