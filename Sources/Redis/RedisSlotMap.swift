import NIOCore

/// Which master of a Redis Cluster owns each hash slot, as `CLUSTER SLOTS` reports it.
struct RedisSlotMap: Sendable, Hashable {
    struct Range: Sendable, Hashable {
        var slots: ClosedRange<Int>
        var master: RedisEndpoint
    }

    /// Sorted by first slot, not overlapping.
    private(set) var ranges: [Range]

    init(ranges: [Range]) {
        self.ranges = ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound }
    }

    /// Every slot on one server: a standalone Redis 7 takes shard commands for any channel.
    static func single(_ endpoint: RedisEndpoint) -> RedisSlotMap {
        RedisSlotMap(ranges: [Range(slots: 0...(RedisKeySlot.count - 1), master: endpoint)])
    }

    var masters: Set<RedisEndpoint> {
        Set(self.ranges.map(\.master))
    }

    func master(ofSlot slot: Int) -> RedisEndpoint? {
        var low = 0
        var high = self.ranges.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let range = self.ranges[middle]
            if slot < range.slots.lowerBound {
                high = middle - 1
            } else if slot > range.slots.upperBound {
                low = middle + 1
            } else {
                return range.master
            }
        }
        return nil
    }

    func master(of channel: String) -> RedisEndpoint? {
        self.master(ofSlot: RedisKeySlot.slot(of: channel))
    }

    /// What a `MOVED` redirection teaches before the map is read again: one slot has moved.
    mutating func move(slot: Int, to master: RedisEndpoint) {
        var ranges: [Range] = []
        for range in self.ranges {
            guard range.slots.contains(slot) else {
                ranges.append(range)
                continue
            }
            if range.slots.lowerBound < slot { ranges.append(Range(slots: range.slots.lowerBound...(slot - 1), master: range.master)) }
            if slot < range.slots.upperBound { ranges.append(Range(slots: (slot + 1)...range.slots.upperBound, master: range.master)) }
        }
        ranges.append(Range(slots: slot...slot, master: master))
        self = RedisSlotMap(ranges: ranges)
    }

    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replicas...], ...]`;
    /// `reporter` stands in for a master whose host is empty (a node that does not know its address).
    init(clusterSlots reply: RedisReply, reportedBy reporter: RedisEndpoint) throws {
        guard let entries = reply.array else {
            throw RedisClientError.protocolError("unexpected CLUSTER SLOTS answer: \(reply)")
        }
        var ranges: [Range] = []
        for entry in entries {
            guard let fields = entry.array, fields.count >= 3,
                let start = fields[0].integer, let end = fields[1].integer, start <= end,
                let node = fields[2].array, node.count >= 2,
                let host = node[0].string, let port = node[1].integer
            else {
                throw RedisClientError.protocolError("unexpected CLUSTER SLOTS entry: \(entry)")
            }
            let master = RedisEndpoint(host: host.isEmpty || host == "?" ? reporter.host : host, port: Int(port))
            ranges.append(Range(slots: Int(start)...Int(end), master: master))
        }
        guard !ranges.isEmpty else { throw RedisClientError.protocolError("CLUSTER SLOTS assigned no slot") }
        self.init(ranges: ranges)
    }
}

extension RedisCommand {
    static func spublish(_ channel: String, _ message: ByteBuffer) -> RedisCommand {
        RedisCommand([ByteBuffer(string: "SPUBLISH"), ByteBuffer(string: channel), message])
    }
}
