/// One node of a Redis Cluster as a line of `CLUSTER NODES` describes it.
struct RedisClusterNode: Sendable, Hashable {
    var endpoint: RedisEndpoint
    var isMaster: Bool
    /// Flagged `fail`, `fail?`, `handshake` or `noaddr`: not worth a connection attempt now.
    var isFailing: Bool

    /// Every node of a `CLUSTER NODES` reply; `reporter` stands in for a node that does not know
    /// its own address yet (an empty host).
    static func parse(_ text: String, reportedBy reporter: RedisEndpoint) -> [RedisClusterNode] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 8 else { return nil }
            // ip:port@cport[,hostname]
            let address = fields[1].split(separator: "@", maxSplits: 1).first ?? ""
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), port > 0 else {
                return nil
            }
            let flags = Set(fields[2].split(separator: ","))
            var host = String(address[..<colon])
            if host.isEmpty { host = reporter.host }
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return RedisClusterNode(
                endpoint: RedisEndpoint(host: host, port: port),
                isMaster: flags.contains("master"),
                isFailing: !flags.isDisjoint(with: ["fail", "fail?", "handshake", "noaddr"])
            )
        }
    }
}
