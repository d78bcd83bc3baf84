import Foundation
import NIOCore
import NIOPosix

/// A sidecast node this run started.
struct Sidecar {
    let process: ChildProcess
    let host: String
    let port: Int
    let socketPath: String
    /// The admin listener's port, on 127.0.0.1, for builds that have one.
    let adminPort: Int?

    func sample() throws -> ProcessSample {
        try ProcessSampler.sample(pid: process.pid)
    }

    /// Connected clients per shard as sidecast's /metrics counts them
    /// (`sidecast_connected_clients{shard=...}`, summed over transports), in shard order; nil for a
    /// build without an admin listener or a shard label (one loop).
    func clientsPerShard() throws -> [Double]? {
        guard let adminPort else { return nil }
        let text = try Network.get(host: "127.0.0.1", port: adminPort, path: "/metrics")
        var shards: [Int: Double] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("sidecast_connected_clients{") {
            guard let open = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}"),
                let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            else { continue }
            let labels = line[line.index(after: open)..<close].split(separator: ",")
            guard let shard = labels.first(where: { $0.hasPrefix("shard=") }),
                let index = Int(shard.dropFirst("shard=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
            else { continue }
            shards[index, default: 0] += value
        }
        guard !shards.isEmpty else { return nil }
        return (0...(shards.keys.max() ?? 0)).map { shards[$0] ?? 0 }
    }
}

/// One benchmark run, driven from the main thread: its temporary folder, the servers it started
/// and the load event loop. `shutdown()` stops everything it started.
final class Bench {
    let options: Options
    let load: LoadHandle
    private let folder: URL
    private let group: MultiThreadedEventLoopGroup
    private var children: [ChildProcess] = []
    private var clientsOpened = 0

    /// Clients left to the load generator's own sockets: backends, setup connections.
    static let spareFiles = 64

    init(options: Options, fileLimit: Int) throws {
        guard FileManager.default.isExecutableFile(atPath: options.sidecast) else {
            throw BenchError("no sidecast binary at \(options.sidecast): build it (swift build -c release -Xswiftc -enforce-exclusivity=unchecked, as scripts/run.sh does) or pass --sidecast PATH")
        }
        let needed = options.clients + Self.spareFiles
        guard needed <= fileLimit else {
            throw BenchError(
                "--clients \(options.clients) needs about \(needed) open files in this process (and as many in sidecast), "
                    + "but the limit here is \(fileLimit) (RLIMIT_NOFILE hard limit); use at most \(fileLimit - Self.spareFiles) clients"
            )
        }
        let perAddress = (options.clients + options.addresses - 1) / options.addresses
        let ports = Self.ephemeralPortCount()
        guard perAddress < ports else {
            throw BenchError(
                "\(perAddress) clients per source address exceed the \(ports) ephemeral ports; raise --addresses"
            )
        }
        self.options = options
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("sidecast-bench-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // One thread: the load generator runs on one core, and one loop keeps its state simple.
        // Its thread does all the load work; the main thread only polls.
        group = Self.pinsCores(options)
            ? MultiThreadedEventLoopGroup(pinnedCPUIDs: [options.loadCore])
            : MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let capacity = options.clients
        let deflate = options.deflate
        load = LoadHandle(
            bound: try loop.submit {
                NIOLoopBound(Load(loop: loop, clientCapacity: capacity, offersDeflate: deflate), eventLoop: loop)
            }.wait()
        )
    }

    /// Starts a sidecast node on the sidecar core and waits until it listens.
    func startSidecast(name: String = "sidecast", redisPort: Int? = nil, extraArguments: [String] = []) throws -> Sidecar {
        let host = options.targetHost
        let port = try Network.freePort(host: host)
        let socketPath = folder.appendingPathComponent("\(name).sock").path
        var arguments = [
            "--host", host, "--port", String(port), "--socket", socketPath,
            "--ping-interval", String(options.pingInterval), "--ping-timeout", String(options.pingTimeout),
            "--log-level", "warning",
        ]
        if options.deflate { arguments.append("--per-message-deflate") }
        arguments += extraArguments
        if let redisPort {
            arguments += ["--redis", "redis://127.0.0.1:\(redisPort)"]
            if options.redisStreams { arguments.append("--redis-streams") }
        }
        // Builds with an admin (metrics) listener default it to a fixed port, which a second
        // node on this machine could not bind.
        var adminPort: Int?
        if try sidecastAccepts("--admin-port") {
            adminPort = try Network.freePort(host: "127.0.0.1")
            arguments += ["--admin-port", String(adminPort!)]
        }
        // Builds with several event loops default to one per CPU: ask for the number measured.
        if try sidecastAccepts("--threads") {
            arguments += ["--threads", String(options.threads)]
        } else if options.threads != 1 {
            throw BenchError("\(options.sidecast) has no --threads: it serves one event loop")
        }
        // Builds that cap clients at their open-file limit less a reserve for backends, Redis and
        // the admin listener would answer 503 to counts this tool allows (its limit less
        // `spareFiles`): give them a cap that fits the run.
        if try sidecastAccepts("--max-connections") {
            arguments += ["--max-connections", String(options.clients + Self.spareFiles)]
        }
        let process = try ChildProcess(
            name: name,
            executable: options.sidecast,
            arguments: arguments,
            core: pinsCores ? options.sidecarCore : nil,
            folder: folder
        )
        children.append(process)
        try process.waitUntilListening(host: host, port: port, socketFile: socketPath)
        return Sidecar(process: process, host: host, port: port, socketPath: socketPath, adminPort: adminPort)
    }

    /// Starts a throwaway redis-server (no persistence) on the sidecar core.
    func startRedis() throws -> (process: ChildProcess, port: Int) {
        let port = try Network.freePort(host: "127.0.0.1")
        let process = try ChildProcess(
            name: "redis",
            executable: options.redisServer,
            arguments: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            core: pinsCores ? options.sidecarCore : nil,
            folder: folder
        )
        children.append(process)
        try process.waitUntilListening(host: "127.0.0.1", port: port)
        return (process, port)
    }

    /// Attaches a backend to `sidecar`; returns its index in `Load.backends`.
    func attachBackend(to sidecar: Sidecar) throws -> Int {
        let path = sidecar.socketPath
        return try load.runFuture { load in
            BackendHandler.attach(path: path, on: load.loop).assumeIsolated().flatMapThrowing { channel in
                load.backends.append(try channel.pipeline.syncOperations.handler(type: BackendHandler.self))
                return load.backends.count - 1
            }.nonisolated()
        }
    }

    /// Opens `count` clients to `sidecar` at the ramp rate, spread over the source addresses, and
    /// waits until all are connected; returns their indices. Fails if any client failed.
    func connectClients(_ count: Int, node: Int = 0, to sidecar: Sidecar) throws -> Range<Int> {
        let first = clientsOpened
        clientsOpened += count
        return try connectClients(first..<(first + count), node: node, to: sidecar)
    }

    /// Opens clients `indices` again (clients that were open before and closed), as
    /// `connectClients(_:node:to:)` opens new ones.
    func connectClients(_ indices: Range<Int>, node: Int = 0, to sidecar: Sidecar) throws -> Range<Int> {
        let (first, count) = (indices.lowerBound, indices.count)
        let before = try load.run { $0.connected + $0.failed }
        let (host, port, addresses, bound) = (sidecar.host, sidecar.port, options.addresses, load.bound)
        let ramp = options.ramp
        try load.run { load in
            _ = Pacer.run(on: load.loop, rate: ramp, count: count) { offset in
                let index = first + offset
                SocketIOClientHandler.connect(
                    index: index,
                    node: node,
                    host: host,
                    port: port,
                    source: "127.0.0.\(2 + index % addresses)",
                    query: "bench=\(index)",
                    delegate: bound
                )
            }
        }
        let target = before + count
        let settled = try load.wait(timeout: Double(count) / ramp + 30) { $0.connected + $0.failed >= target }
        let (connected, failed, failures) = try load.run { ($0.connected, $0.failed, $0.failures) }
        guard settled, connected >= target else {
            let reasons = failures.sorted { $0.value > $1.value }.prefix(5).map { "\($0.value)× \($0.key)" }
            let pending = target - connected - failed
            throw BenchError(
                "only \(connected) of \(target) clients connected; failures: "
                    + (reasons.isEmpty ? "none" : reasons.joined(separator: "; "))
                    + (pending > 0 ? "; \(pending) still connecting when the wait ended" : "")
            )
        }
        return indices
    }

    /// Stops everything; keeps the servers' logs when asked (after a failure), and says where.
    func shutdown(keepingLogs: Bool) {
        try? load.run { $0.closeAllClients() }
        for child in children.reversed() { child.stop() }
        try? group.syncShutdownGracefully()
        if keepingLogs {
            SidecastBench.warn("server logs kept in \(folder.path)")
        } else {
            try? FileManager.default.removeItem(at: folder)
        }
    }

    private var helpText: String?

    /// Whether the sidecast binary lists `flag` in its `--help`: the tool also runs older builds.
    private func sidecastAccepts(_ flag: String) throws -> Bool {
        if let helpText { return helpText.contains(flag) }
        let help = Process()
        let output = Pipe()
        help.executableURL = URL(fileURLWithPath: options.sidecast)
        help.arguments = ["--help"]
        help.standardOutput = output
        help.standardError = output
        do {
            try help.run()
        } catch {
            throw BenchError("cannot run \(options.sidecast): \(error)")
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        help.waitUntilExit()
        helpText = text
        return text.contains(flag)
    }

    private var pinsCores: Bool { Self.pinsCores(options) }

    /// Whether sidecast and the load get cores of their own.
    static func pinsCores(_ options: Options) -> Bool {
        Host.coreCount > max(options.sidecarCore, options.loadCore) && options.sidecarCore != options.loadCore
    }

    private static func ephemeralPortCount() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else {
            return 28_232
        }
        let bounds = text.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        return bounds.count == 2 ? bounds[1] - bounds[0] + 1 : 28_232
    }
}
