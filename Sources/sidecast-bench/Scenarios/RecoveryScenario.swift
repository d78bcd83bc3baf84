import Foundation

/// Connection state recovery under a reconnect storm: N clients connect to a sidecast with
/// `--recovery-window`, get one event each (their first offset), then all drop at once. While
/// they are away the backend emits to the namespace at `--rate` for `--duration` seconds: the
/// node keeps N sessions and those events. Then every client reconnects at the ramp rate with
/// its pid and offset, as the JavaScript client does, and must get its sid back and every
/// event it missed. Reports the memory of the sessions and kept events, and what came back.
enum RecoveryScenario {
    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let sidecar = try bench.startSidecast(extraArguments: ["--recovery-window", "120000"])
        let backend = try bench.attachBackend(to: sidecar)
        try bench.load.run { $0.trackRecovery() }
        Thread.sleep(forTimeInterval: 0.5)
        let before = try sidecar.sample()

        let indices = try bench.connectClients(options.clients, to: sidecar)
        try bench.load.run { $0.backends[backend].send(#"{"type":"emit","nsp":"/","event":"tick","args":[0]}"#) }
        guard try bench.load.wait(timeout: 60, until: { $0.missing(expected: 1, of: indices) == 0 }) else {
            throw BenchError("not every client got the first event within 60 s")
        }
        Thread.sleep(forTimeInterval: 2)
        let connected = try sidecar.sample()

        try bench.load.run { $0.closeAllClients() }
        guard try bench.load.wait(timeout: 60, until: { $0.connected == 0 }) else {
            throw BenchError("the clients did not close within 60 s")
        }
        let kept = Int(options.rate * options.duration)
        let payload = Payload.make(sequence: 0, size: options.payloadBytes)
        try bench.load.runFuture { load in
            Pacer.run(on: load.loop, rate: options.rate, count: kept) { sequence in
                load.backends[backend].send(#"{"type":"emit","nsp":"/","event":"tick","args":[\#(sequence),\#(payload)]}"#)
            }
        }
        // Sidecast has read the last emit once the backend's lines are all written and a moment passed.
        Thread.sleep(forTimeInterval: 2)
        let away = try sidecar.sample()

        try bench.load.run { load in
            load.resetCounters()
            load.startRecovering()
        }
        let stormStart = ContinuousClock.now
        _ = try bench.connectClients(indices, to: sidecar)
        let stormSeconds = ContinuousClock.now.seconds(since: stormStart)
        let complete = try bench.load.wait(timeout: 60) { $0.missing(expected: kept, of: indices) == 0 }
        let (recovered, replayed, missing) = try bench.load.run { load in
            (load.recovery?.recovered ?? 0, load.totalReceived, load.missing(expected: kept, of: indices))
        }
        Thread.sleep(forTimeInterval: 2)
        let after = try sidecar.sample()

        let n = Double(options.clients)
        var notes = try bench.healthNotes()
        if !complete { notes.append("\(missing) replayed events missing after 60 s") }
        return BenchResult(
            scenario: "recovery",
            parameters: [
                "clients": String(options.clients), "events_away": String(kept),
                "payload_bytes": String(options.payloadBytes), "ramp_per_s": describe(options.ramp),
                "threads": String(options.threads),
            ],
            figures: [
                Figure("clients", n),
                Figure("recovered", Double(recovered)),
                Figure("events replayed", Double(replayed)),
                Figure("events missing", Double(missing)),
                Figure("storm rate", n / stormSeconds, "conn/s"),
                Figure("RSS before", Double(before.rss) / 1_048_576, "MiB"),
                Figure("RSS connected", Double(connected.rss) / 1_048_576, "MiB"),
                Figure("RSS away", Double(away.rss) / 1_048_576, "MiB"),
                Figure("RSS recovered", Double(after.rss) / 1_048_576, "MiB"),
            ],
            notes: notes
        )
    }
}
