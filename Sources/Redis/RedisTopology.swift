/// How the Redis servers a ``RedisClient`` uses are laid out, and so how it finds the node to
/// connect to.
public enum RedisTopology: Sendable, Hashable {
    /// One server, at the configuration's URL.
    case standalone
    /// The current master of the set Sentinel calls `masterName`, found by asking `sentinels` in
    /// turn and followed across failovers. The configuration's URL gives only the credentials and
    /// the database of the data nodes; the sentinels are reached without them.
    case sentinel(masterName: String, sentinels: [RedisEndpoint])
    /// Any node of a Redis Cluster, found from the seed nodes: in classic pub/sub a PUBLISH on one
    /// node reaches the subscribers of every node. The configuration's URL gives the credentials.
    case cluster(seeds: [RedisEndpoint])
}

/// A TCP address of a Redis server or Sentinel: `host:port`, or `[v6-address]:port`.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[::1]:port`, or a bare host, which takes `defaultPort`.
    public init(_ text: String, defaultPort: Int) throws {
        var host = Substring(text)
        var port: Substring?
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let after = host[host.index(after: close)...]
            port = after.hasPrefix(":") ? after.dropFirst() : (after.isEmpty ? nil : after)
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.lastIndex(of: ":"), host.firstIndex(of: ":") == colon {
            port = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw RedisURLError("missing host in '\(text)'") }
        self.host = String(host)
        self.port = defaultPort
        if let port {
            guard let number = Int(port), (1...65535).contains(number) else {
                throw RedisURLError("port '\(port)' in '\(text)' is not a number from 1 to 65535")
            }
            self.port = number
        }
    }

    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// `url`'s credentials and database, at this address.
    func url(loggingInAs url: RedisURL) -> RedisURL {
        var target = url
        target.host = self.host
        target.port = self.port
        target.unixPath = nil
        return target
    }
}

extension RedisURL {
    /// The TCP address, or nil for a Unix socket.
    var endpoint: RedisEndpoint? {
        self.host.map { RedisEndpoint(host: $0, port: self.port) }
    }

    /// AUTH and SELECT as this URL asks for them, to send first on every new connection.
    var handshakeCommands: [RedisCommand] {
        var commands: [RedisCommand] = []
        if let password = self.password {
            commands.append(RedisCommand(["AUTH"] + (self.user.map { [$0] } ?? []) + [password]))
        }
        if let database = self.database, database != 0 {
            commands.append(RedisCommand(["SELECT", String(database)]))
        }
        return commands
    }
}
