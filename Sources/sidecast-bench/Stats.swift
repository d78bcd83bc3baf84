/// Latencies in nanoseconds, kept whole so percentiles are exact. Holds at most `capacity`
/// samples (the rest are counted but not kept) so a long run cannot eat the machine's memory.
struct LatencyRecorder: Sendable {
    static let capacity = 20_000_000

    private(set) var samples: [UInt64] = []
    private(set) var dropped = 0

    mutating func record(_ nanoseconds: UInt64) {
        guard samples.count < Self.capacity else {
            dropped += 1
            return
        }
        samples.append(nanoseconds)
    }

    mutating func removeAll() {
        samples.removeAll(keepingCapacity: true)
        dropped = 0
    }

    func summary() -> LatencySummary {
        LatencySummary(samples)
    }
}

/// Percentiles of a set of latencies, in milliseconds.
struct LatencySummary: Sendable {
    var count: Int
    var p50: Double
    var p99: Double
    var max: Double

    init(_ samples: [UInt64]) {
        let sorted = samples.sorted()
        count = sorted.count
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let rank = Int((p * Double(sorted.count - 1)).rounded())
            return Double(sorted[rank]) / 1e6
        }
        p50 = percentile(0.50)
        p99 = percentile(0.99)
        max = percentile(1.0)
    }
}
