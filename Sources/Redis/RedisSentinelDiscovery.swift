import Logging
import NIOCore

/// Finds the master of a set that Redis Sentinel monitors: asks the sentinels in turn
/// (`SENTINEL get-master-addr-by-name`), the one that answered last first, and reads the
/// `+switch-master` events one of them sends when it promotes a replica.
///
/// Confined to the client's event loop.
final class RedisSentinelDiscovery {
    let masterName: String
    /// The master the sentinels named last.
    private(set) var master: RedisEndpoint?

    private var sentinels: [RedisEndpoint]
    /// The data nodes' credentials and database.
    private let credentials: RedisURL
    /// What the sentinels themselves require, when they do.
    private let sentinelCredentials: (user: String?, password: String?)
    private let eventLoop: EventLoop
    private let timeout: TimeAmount
    private let logger: Logger
    /// The round of questions in flight, shared by every caller that asks meanwhile.
    private var resolving: EventLoopFuture<RedisEndpoint>?
    /// Which sentinel the event link uses; it moves on after each failure.
    private var watched = 0

    init(
        masterName: String, sentinels: [RedisEndpoint], credentials: RedisURL, sentinelUser: String? = nil, sentinelPassword: String? = nil,
        eventLoop: EventLoop, timeout: TimeAmount, logger: Logger
    ) {
        precondition(!sentinels.isEmpty, "Sentinel mode needs at least one sentinel")
        self.masterName = masterName
        self.sentinels = sentinels
        self.credentials = credentials
        self.sentinelCredentials = (sentinelUser, sentinelPassword.flatMap { $0.isEmpty ? nil : $0 })
        self.eventLoop = eventLoop
        self.timeout = timeout
        self.logger = logger
    }

    /// Where the data links connect: the master as the sentinels name it now, checked with
    /// `ROLE` on arrival.
    func masterTarget() -> EventLoopFuture<RedisTarget> {
        let credentials = self.credentials
        return self.resolveMaster().map { master in
            RedisTarget(url: master.url(loggingInAs: credentials), requireMaster: true)
        }
    }

    /// The sentinel the event link subscribes on; after a failure, the next one.
    func sentinelTarget(failed: RedisTarget?) -> RedisTarget {
        if failed != nil { self.watched += 1 }
        return RedisTarget(url: self.sentinelURL(self.sentinels[self.watched % self.sentinels.count]))
    }

    /// Asks the sentinels for the master, in turn, until one names it.
    func resolveMaster() -> EventLoopFuture<RedisEndpoint> {
        if let resolving = self.resolving { return resolving }
        let future = self.ask(0, lastError: nil)
        self.resolving = future
        future.assumeIsolated().whenComplete { _ in self.resolving = nil }
        return future
    }

    /// The new master if `message` (a `+switch-master` payload) is about this set.
    func switched(_ message: String) -> (from: RedisEndpoint, to: RedisEndpoint)? {
        let fields = message.split(separator: " ")
        guard fields.count == 5, fields[0] == self.masterName, let oldPort = Int(fields[2]), let newPort = Int(fields[4]) else {
            return nil
        }
        let switched = (from: RedisEndpoint(host: String(fields[1]), port: oldPort), to: RedisEndpoint(host: String(fields[3]), port: newPort))
        self.master = switched.to
        return switched
    }

    private func ask(_ index: Int, lastError: String?) -> EventLoopFuture<RedisEndpoint> {
        guard index < self.sentinels.count else {
            let reason = "none of \(self.sentinels.count) sentinels named master '\(self.masterName)'"
            return self.eventLoop.makeFailedFuture(RedisClientError.noMaster(lastError.map { "\(reason); last error: \($0)" } ?? reason))
        }
        let sentinel = self.sentinels[index]
        let question = RedisCommand(["SENTINEL", "get-master-addr-by-name", self.masterName])
        return RedisProbe.send([question], to: self.sentinelURL(sentinel), on: self.eventLoop, timeout: self.timeout, logger: self.logger)
            .flatMapThrowing { replies -> RedisEndpoint in
                if case .error(let message) = replies.first {
                    throw RedisClientError.commandFailed(message)
                }
                guard let fields = replies.first?.array, fields.count == 2, let host = fields[0].string,
                    let port = fields[1].string.flatMap({ Int($0) })
                else {
                    throw RedisClientError.noMaster("answered \(replies.first.map { "\($0)" } ?? "nothing")")
                }
                return RedisEndpoint(host: host, port: port)
            }
            .assumeIsolated()
            .map { master in
                // The sentinel that answered is asked first next time, as the Sentinel clients guide advises.
                if index > 0 {
                    self.sentinels.remove(at: index)
                    self.sentinels.insert(sentinel, at: 0)
                }
                if self.master != master {
                    self.logger.info("Redis Sentinel names the master", metadata: [
                        "redis.master-name": "\(self.masterName)", "redis.master": "\(master)", "redis.sentinel": "\(sentinel)",
                    ])
                    self.master = master
                }
                return master
            }
            .flatMapError { error in
                self.logger.debug("sentinel did not name the master", metadata: ["redis.sentinel": "\(sentinel)", "error": "\(error)"])
                return self.ask(index + 1, lastError: "sentinel \(sentinel): \(error)")
            }
            .nonisolated()
    }

    /// Sentinels are reached with their own credentials, if any, never the data nodes'.
    private func sentinelURL(_ sentinel: RedisEndpoint) -> RedisURL {
        var url = sentinel.url(loggingInAs: self.credentials)
        url.user = self.sentinelCredentials.user
        url.password = self.sentinelCredentials.password
        url.database = nil
        return url
    }
}
