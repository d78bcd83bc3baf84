import Foundation
import NIOCore

/// Steps several scenarios share.
extension Bench {
    /// Makes backend `backend` join each connecting client to `room(clientIndex)` and remember its
    /// sid in `Load.sids`. Set before the clients connect.
    func joinOnConnect(backend: Int, room: @escaping @Sendable (Int) -> String) throws {
        try load.run { load in
            let handler = load.backends[backend]
            handler.onConnect = { [unowned load, unowned handler] sid, client in
                load.sids[client] = sid
                handler.send(#"{"type":"join","sid":"\#(sid)","nsp":"/","rooms":["\#(room(client))"]}"#)
            }
        }
    }

    /// Waits until the backends saw the `connect` of the first `count` clients.
    func waitForSids(_ count: Int, timeout: Double = 15) throws {
        guard try load.wait(timeout: timeout, until: { $0.sids.prefix(count).allSatisfy { $0 != nil } }) else {
            throw BenchError("the backend did not see every client's connect within \(Int(timeout)) s")
        }
    }

    /// Asks backend `backend` how many sockets `room` holds (cluster-wide) until it is `count`.
    func waitForRoom(_ room: String, count: Int, backend: Int, timeout: Double = 15) throws {
        let deadline = ContinuousClock.now + .seconds(timeout)
        var seen: Int?
        while ContinuousClock.now < deadline {
            let reply = try load.runFuture { load in
                load.backends[backend].request(#"{"type":"count","nsp":"/","in":["\#(room)"]}"#)
            }
            guard reply.ok else { throw BenchError("count query failed: \(reply.line)") }
            seen = reply.count
            if seen == count { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw BenchError("room \(room) holds \(seen.map(String.init) ?? "?") sockets, expected \(count)")
    }

    /// Sends `emit` lines from backend `backend` to `rooms` at `rate` per second, `count` in all,
    /// each carrying a payload with its sequence number and send time; returns when the last is sent.
    func emitPaced(backend: Int, rooms: [String], event: String, rate: Double, count: Int) throws {
        let size = options.payloadBytes
        let to = rooms.map { "\"\($0)\"" }.joined(separator: ",")
        try load.runFuture { load in
            let handler = load.backends[backend]
            return Pacer.run(on: load.loop, rate: rate, count: count) { [unowned handler] sequence in
                let payload = Payload.make(sequence: sequence, size: size)
                handler.send(#"{"type":"emit","nsp":"/","event":"\#(event)","args":[\#(payload)],"to":[\#(to)]}"#)
            }
        }
    }

    /// Waits until the clients received `total` events, or `timeout` seconds; returns the instant
    /// the count was reached (or the timeout).
    @discardableResult
    func waitForDeliveries(_ total: Int, timeout: Double) throws -> ContinuousClock.Instant {
        _ = try load.wait(timeout: timeout) { $0.totalReceived >= total }
        return .now
    }

    /// Warnings from the backends (error lines) and dropped clients, as notes for the result.
    func healthNotes() throws -> [String] {
        try load.run { load in
            var notes: [String] = []
            if load.dropped > 0 { notes.append("\(load.dropped) clients disconnected during the run") }
            let unkept = load.latencies.reduce(0) { $0 + $1.dropped }
            if unkept > 0 { notes.append("\(unkept) latencies beyond the first \(LatencyRecorder.capacity) were not kept") }
            for backend in load.backends where backend.errorLines > 0 {
                notes.append("backend got \(backend.errorLines) error lines, first: \(backend.firstError ?? "")")
            }
            return notes
        }
    }
}

extension ContinuousClock.Instant {
    /// Seconds from `earlier` to this instant.
    func seconds(since earlier: ContinuousClock.Instant) -> Double {
        let duration = self - earlier
        return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension LatencySummary {
    /// The p50/p99/max figures, named with `prefix`.
    func figures(_ prefix: String = "") -> [Figure] {
        [Figure("\(prefix)p50", p50, "ms"), Figure("\(prefix)p99", p99, "ms"), Figure("\(prefix)max", max, "ms")]
    }
}
