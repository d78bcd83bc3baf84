import Foundation

/// `sidecast-bench`: starts sidecast, loads it from this process over the public wire (Socket.IO
/// clients on WebSocket, a backend on the Unix socket), prints one table row per run.
@main
enum SidecastBench {
    static func main() {
        let options: Options
        do throws(UsageError) {
            options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            switch error {
            case .help:
                print(Options.usage)
                exit(0)
            case .invalid(let message):
                FileHandle.standardError.write(Data("error: \(message) (see --help)\n".utf8))
                exit(2)
            }
        }

        let fileLimit = Host.raiseFileLimit()
        if !Bench.pinsCores(options) {
            warn("only \(Host.coreCount) core(s): sidecast and the load share them, figures will be pessimistic")
        }
        do {
            let bench = try Bench(options: options, fileLimit: fileLimit)
            let result: BenchResult
            do {
                result = try options.scenario.run(bench)
            } catch {
                bench.shutdown(keepingLogs: true)
                throw error
            }
            bench.shutdown(keepingLogs: false)
            result.printTable()
            if let path = options.json { try result.writeJSON(to: path) }
        } catch {
            warn("\(error)")
            exit(1)
        }
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("sidecast-bench: \(message)\n".utf8))
    }
}

extension Scenario {
    func run(_ bench: Bench) throws -> BenchResult {
        switch self {
        case .idle: try IdleScenario.run(bench)
        case .fanout: try FanoutScenario.run(bench)
        case .chat: try ChatScenario.run(bench)
        case .bridge: try BridgeScenario.run(bench)
        case .cluster: try ClusterScenario.run(bench)
        case .recovery: try RecoveryScenario.run(bench)
        case .relay: try RelayScenario.run(bench)
        }
    }
}
