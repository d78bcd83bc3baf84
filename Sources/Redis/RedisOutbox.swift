import DequeModule
import NIOCore

/// Publishes waiting for the command link, oldest first, bounded so an outage cannot eat memory.
struct RedisOutbox {
    struct Entry {
        var channel: String
        var message: ByteBuffer
    }

    let limit: Int
    private(set) var entries: Deque<Entry> = []
    /// Every publish dropped to respect ``limit``, over the client's lifetime.
    private(set) var dropped = 0

    init(limit: Int) {
        self.limit = limit
    }

    var count: Int { self.entries.count }

    /// Returns false when a publish had to be dropped (the oldest, or this one if the limit is 0).
    mutating func append(channel: String, message: ByteBuffer) -> Bool {
        guard self.limit > 0 else {
            self.dropped += 1
            return false
        }
        var kept = true
        if self.entries.count >= self.limit {
            self.entries.removeFirst()
            self.dropped += 1
            kept = false
        }
        self.entries.append(Entry(channel: channel, message: message))
        return kept
    }

    /// Puts publishes back in front, in their order, as older than anything queued; when that
    /// passes the limit, the oldest of all are the ones dropped.
    mutating func requeue(_ older: [Entry]) {
        self.entries.insert(contentsOf: older, at: 0)
        let excess = self.entries.count - self.limit
        if excess > 0 {
            self.entries.removeFirst(excess)
            self.dropped += excess
        }
    }

    mutating func removeAll() -> Deque<Entry> {
        defer { self.entries.removeAll() }
        return self.entries
    }
}
