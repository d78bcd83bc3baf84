import Foundation

/// The benchmark to run; each prints one table row.
enum Scenario: String, CaseIterable, Sendable {
    case idle, fanout, chat, bridge, cluster, recovery, relay

    var summary: String {
        switch self {
        case .idle: "N idle WebSocket connections: sidecar RSS per connection and CPU while idle"
        case .fanout: "C clients in one room, the backend emits R events/s: CPU per delivery, latency, losses"
        case .chat: "clients emit, the backend re-emits to their room: latency and CPU per delivery"
        case .bridge: "emits/s backend connections push, to single sockets and to a room"
        case .cluster: "two sidecars and redis-server: cross-node latency next to local latency"
        case .recovery: "N clients drop at once and recover (--recovery-window): memory of the kept sessions and events"
        case .relay: "two sidecars with --relay-sessions: a polling POST to its session's node, then relayed from the other"
        }
    }

    /// Defaults chosen so that every scenario runs in well under a minute on two cores.
    var defaultClients: Int {
        switch self {
        case .idle: 1000
        case .fanout: 2000
        case .chat: 1000
        case .bridge: 4
        case .cluster: 4
        case .recovery: 2000
        case .relay: 4
        }
    }

    var defaultRate: Double {
        switch self {
        case .idle, .bridge, .relay: 0
        case .fanout: 25
        case .chat: 500
        case .cluster: 1000
        case .recovery: 100
        }
    }

    /// Idle waits out a full default ping interval (25 s) so the window includes heartbeats.
    var defaultDuration: Double {
        switch self {
        case .idle: 30
        case .bridge, .relay: 5
        case .fanout, .chat, .cluster: 10
        case .recovery: 5
        }
    }
}

/// Command-line options, parsed by hand to keep the tool free of dependencies beyond SwiftNIO.
struct Options: Sendable {
    var scenario: Scenario
    var clients: Int
    /// Events (fanout, cluster) or messages (chat) per second.
    var rate: Double
    var duration: Double
    var payloadBytes = 100
    /// idle: bytes of one event each client sends right after connecting (0: none).
    var firstMessageBytes = 0
    /// New connections per second while connecting clients.
    var ramp: Double = 2000
    var sidecast: String
    var redisServer = "redis-server"
    var json: String?
    /// Client source addresses 127.0.0.2 ... 127.0.0.(addresses + 1).
    var addresses = 8
    var roomSize = 10
    var pingInterval = 25_000
    var pingTimeout = 20_000
    var targetHost = "127.0.0.1"
    var sidecarCore = 0
    var loadCore = 1
    /// sidecast's event loops (`--threads`); they all run on the sidecar core.
    var threads = 1
    /// bridge: backend connections attached, each flooding emits at once.
    var backends = 1
    /// sidecast runs with --per-message-deflate and every client offers the extension.
    var deflate = false
    /// cluster: the nodes share one Redis stream (sidecast's --redis-streams) instead of pub/sub.
    var redisStreams = false

    static let maxDuration = 600.0
    static let maxClients = 1_000_000

    static let usage = """
        usage: sidecast-bench SCENARIO [options]
               sidecast-bench --scenario SCENARIO [options]

        Starts a sidecast binary pinned to one core, drives it from this process pinned to
        another (raw Socket.IO v5 / Engine.IO v4 WebSocket clients plus a backend on the
        Unix socket), prints one table row and optionally writes JSON.

        Scenarios:
        \(Scenario.allCases.map { "  \($0.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(separator: "\n"))

        Options (defaults depend on the scenario: idle/fanout/chat/bridge/cluster/recovery/relay):
          --clients N         clients (1000/2000/1000/4/4/2000/4)
          --rate R            events or messages per second (-/25/500/-/1000/100 while away/-)
          --duration S        seconds of measurement (30/10/10/5 per phase/10/5 away/5 per phase)
          --payload-bytes B   approximate size of each event's payload (100)
          --first-message B   idle: each client first sends one event of about B bytes, to
                              see what a connection keeps after a large message (0: none)
          --ramp R            new connections per second while connecting (2000)
          --addresses N       spread clients over source addresses 127.0.0.2..127.0.0.N+1 (8)
          --room-size N       chat: clients per room (10)
          --ping-interval MS  passed to sidecast (25000)
          --ping-timeout MS   passed to sidecast (20000)
          --sidecast PATH     sidecast binary (the release build next to this one, else
                              .build/release/sidecast)
          --redis-server PATH redis-server binary for cluster and relay (redis-server)
          --host ADDR         loopback address sidecast listens on (127.0.0.1); anything
                              outside 127.0.0.0/8 is refused
          --threads N         sidecast's event loops, all on the sidecar core (1)
          --backends N        bridge: backend connections, each pushing emits at once (1)
          --sidecar-core N    core sidecast (and redis-server) run on (0)
          --load-core N       core this process runs on (1)
          --deflate           run sidecast with --per-message-deflate; clients offer it as
                              browsers do and inflate what they get (no value)
          --redis-streams     cluster: the nodes share one Redis stream (sidecast's
                              --redis-streams) instead of pub/sub (no value)
          --json FILE         also write the result as JSON
          -h, --help          this text

        Every run stops by itself: durations are capped at \(Int(maxDuration)) s and waits time out.
        """

    /// Parses `arguments` (without the program name).
    static func parse(_ arguments: [String]) throws(UsageError) -> Options {
        var rest = arguments[...]
        var scenarioName: String?
        var values: [String: String] = [:]
        while let argument = rest.popFirst() {
            if argument == "-h" || argument == "--help" { throw .help }
            guard argument.hasPrefix("--") else {
                guard scenarioName == nil else { throw .invalid("unexpected argument '\(argument)'") }
                scenarioName = argument
                continue
            }
            var name = String(argument.dropFirst(2))
            if name == "deflate" || name == "redis-streams" {
                values[name] = "true"
                continue
            }
            var value: String
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            } else {
                guard let next = rest.popFirst() else { throw .invalid("--\(name) needs a value") }
                value = next
            }
            if name == "scenario" {
                scenarioName = value
            } else {
                values[name] = value
            }
        }
        guard let scenarioName else { throw .invalid("name a scenario") }
        guard let scenario = Scenario(rawValue: scenarioName) else {
            throw .invalid("unknown scenario '\(scenarioName)'")
        }
        var options = Options(
            scenario: scenario,
            clients: scenario.defaultClients,
            rate: scenario.defaultRate,
            duration: scenario.defaultDuration,
            sidecast: defaultSidecastPath()
        )
        for (name, value) in values {
            try options.set(name, value)
        }
        try options.validate()
        return options
    }

    private mutating func set(_ name: String, _ value: String) throws(UsageError) {
        func int() throws(UsageError) -> Int {
            guard let number = Int(value) else { throw .invalid("--\(name) needs an integer, not '\(value)'") }
            return number
        }
        func double() throws(UsageError) -> Double {
            guard let number = Double(value), number.isFinite else {
                throw .invalid("--\(name) needs a number, not '\(value)'")
            }
            return number
        }
        switch name {
        case "clients": clients = try int()
        case "rate": rate = try double()
        case "duration": duration = try double()
        case "payload-bytes": payloadBytes = try int()
        case "first-message": firstMessageBytes = try int()
        case "ramp": ramp = try double()
        case "addresses": addresses = try int()
        case "room-size": roomSize = try int()
        case "ping-interval": pingInterval = try int()
        case "ping-timeout": pingTimeout = try int()
        case "sidecast": sidecast = value
        case "redis-server": redisServer = value
        case "host": targetHost = value
        case "sidecar-core": sidecarCore = try int()
        case "load-core": loadCore = try int()
        case "threads": threads = try int()
        case "backends": backends = try int()
        case "json": json = value
        case "deflate": deflate = true
        case "redis-streams": redisStreams = true
        default: throw .invalid("unknown option --\(name)")
        }
    }

    private func validate() throws(UsageError) {
        guard (1...Self.maxClients).contains(clients) else { throw .invalid("--clients must be 1...\(Self.maxClients)") }
        guard duration > 0, duration <= Self.maxDuration else {
            throw .invalid("--duration must be in (0, \(Int(Self.maxDuration))]")
        }
        guard rate >= 0, rate <= 1_000_000 else { throw .invalid("--rate must be 0...1000000") }
        if [.fanout, .chat, .cluster].contains(scenario), rate <= 0 {
            throw .invalid("--rate must be positive for \(scenario.rawValue)")
        }
        guard ramp > 0 else { throw .invalid("--ramp must be positive") }
        guard (1...4096).contains(threads) else { throw .invalid("--threads must be 1...4096") }
        guard (1...64).contains(backends) else { throw .invalid("--backends must be 1...64") }
        guard (1...250).contains(addresses) else { throw .invalid("--addresses must be 1...250 (127.0.0.2 ... 127.0.0.251)") }
        guard (40...1_000_000).contains(payloadBytes) else { throw .invalid("--payload-bytes must be 40...1000000") }
        guard firstMessageBytes == 0 || (40...900_000).contains(firstMessageBytes) else {
            throw .invalid("--first-message must be 0 or 40...900000 (sidecast's default maxPayload is 1000000)")
        }
        guard roomSize >= 1 else { throw .invalid("--room-size must be positive") }
        guard pingInterval > 0, pingTimeout > 0 else { throw .invalid("--ping-interval and --ping-timeout must be positive") }
        guard Self.isLoopback(targetHost) else {
            throw .invalid("--host \(targetHost) is not a loopback address: this tool only loads servers on this machine")
        }
        if scenario == .cluster, clients < 2 { throw .invalid("cluster needs --clients of at least 2 (one per node)") }
    }

    /// True for 127.0.0.0/8, the only targets this tool sends load to (its clients bind to
    /// 127.0.0.x source addresses, so IPv6 is not offered).
    static func isLoopback(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return false }
        return parts[0] == "127"
    }

    /// The release build beside this executable (both live in the same bin folder), else the
    /// conventional release path relative to the working directory.
    private static func defaultSidecastPath() -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let sibling = me.deletingLastPathComponent().appendingPathComponent("sidecast").path
        if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        return ".build/release/sidecast"
    }
}

/// Why the command line was not accepted.
enum UsageError: Error {
    case help
    case invalid(String)
}
