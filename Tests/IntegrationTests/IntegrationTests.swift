import Foundation
import XCTest

/// Runs the Python integration modules in `python/` against the real `sidecast` binary.
///
/// Each test method stands for one module, so a failure names the module and carries its whole
/// output. The modules are independent processes with their own sidecast instances, so the first
/// test that runs starts all of them, a few at a time, and every method then waits for its own.
final class IntegrationTests: XCTestCase {
    /// Every module in `python/` named `test_*.py`, in the order the methods below run.
    static let modules = [
        "test_acks",
        "test_authorize",
        "test_backend_restart",
        "test_backpressure",
        "test_bad_http",
        "test_bad_ndjson",
        "test_bad_packets",
        "test_bench",
        "test_binary",
        "test_broadcast",
        "test_browser",
        "test_chat_languages",
        "test_cli",
        "test_cluster",
        "test_compression",
        "test_config",
        "test_descriptor_limit",
        "test_eio3",
        "test_emitter",
        "test_ha",
        "test_limits",
        "test_msgpack_parser",
        "test_namespaces",
        "test_no_backend",
        "test_ops",
        "test_origins",
        "test_ping_timeout",
        "test_protocol_doc",
        "test_recovery",
        "test_redis_outage",
        "test_relay",
        "test_rooms",
        "test_sharded",
        "test_streams",
        "test_streams_recovery",
        "test_threads",
        "test_tls",
        "test_transports",
    ]

    func testAcks() async throws { try await check("test_acks") }
    func testAuthorize() async throws { try await check("test_authorize") }
    func testBackendRestart() async throws { try await check("test_backend_restart") }
    func testBackpressure() async throws { try await check("test_backpressure") }
    func testBadHTTP() async throws { try await check("test_bad_http") }
    func testBadNDJSON() async throws { try await check("test_bad_ndjson") }
    func testBadPackets() async throws { try await check("test_bad_packets") }
    func testBench() async throws { try await check("test_bench") }
    func testBinary() async throws { try await check("test_binary") }
    func testBroadcast() async throws { try await check("test_broadcast") }
    func testBrowser() async throws { try await check("test_browser") }
    func testChatLanguages() async throws { try await check("test_chat_languages") }
    func testCLI() async throws { try await check("test_cli") }
    func testCluster() async throws { try await check("test_cluster") }
    func testCompression() async throws { try await check("test_compression") }
    func testConfig() async throws { try await check("test_config") }
    func testDescriptorLimit() async throws { try await check("test_descriptor_limit") }
    func testEIO3() async throws { try await check("test_eio3") }
    func testEmitter() async throws { try await check("test_emitter") }
    func testHA() async throws { try await check("test_ha") }
    func testSharded() async throws { try await check("test_sharded") }
    func testStreams() async throws { try await check("test_streams") }
    func testStreamsRecovery() async throws { try await check("test_streams_recovery") }
    func testLimits() async throws { try await check("test_limits") }
    func testMsgpackParser() async throws { try await check("test_msgpack_parser") }
    func testNamespaces() async throws { try await check("test_namespaces") }
    func testNoBackend() async throws { try await check("test_no_backend") }
    func testOps() async throws { try await check("test_ops") }
    func testOrigins() async throws { try await check("test_origins") }
    func testPingTimeout() async throws { try await check("test_ping_timeout") }
    func testProtocolDocument() async throws { try await check("test_protocol_doc") }
    func testRecovery() async throws { try await check("test_recovery") }
    func testRedisOutage() async throws { try await check("test_redis_outage") }
    func testRelay() async throws { try await check("test_relay") }
    func testRooms() async throws { try await check("test_rooms") }
    func testThreads() async throws { try await check("test_threads") }
    func testTLS() async throws { try await check("test_tls") }
    func testTransports() async throws { try await check("test_transports") }

    /// Guards against a module that exists but that no method runs, or a method whose module is gone.
    func testEveryPythonModuleHasATestMethod() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: PythonModuleRunner.directory.path)
        let found = files.filter { $0.hasPrefix("test_") && $0.hasSuffix(".py") }
            .map { String($0.dropLast(3)) }
            .sorted()
        XCTAssertEqual(found, Self.modules.sorted())
    }

    private func check(_ module: String) async throws {
        let environment = ProcessInfo.processInfo.environment
        guard environment["SIDECAST_BIN"] != nil, let python = environment["SIDECAST_PYTHON"] else {
            throw XCTSkip(
                "SIDECAST_BIN and SIDECAST_PYTHON are not set: run scripts/test.sh, which builds "
                    + "sidecast, creates the Python venv and sets both"
            )
        }
        let result = await PythonModuleRunner.shared.result(of: module, python: python, all: Self.modules)
        if result.passed {
            print("IntegrationTests: \(module) passed in \(result.seconds) s")
        } else {
            let why = result.timedOut ? "timed out after \(result.seconds) s" : "exited with status \(result.status)"
            XCTFail("\(module) \(why); its output:\n\(result.output)")
        }
    }
}

/// What one run of a Python module produced.
struct ModuleResult: Sendable {
    var status: Int32
    var timedOut: Bool
    var seconds: Int
    var output: String

    var passed: Bool { status == 0 && !timedOut }
}

/// Starts Python modules, at most `width` at a time, each under a deadline, and keeps their results.
actor PythonModuleRunner {
    static let shared = PythonModuleRunner()

    /// `Tests/IntegrationTests/python`, found from this source file.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("python")

    private let width: Int
    private let timeout: Duration
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var runs: [String: Task<ModuleResult, Never>] = [:]

    init() {
        let environment = ProcessInfo.processInfo.environment
        width = environment["SIDECAST_TEST_JOBS"].flatMap { Int($0) } ?? 3
        timeout = .seconds(environment["SIDECAST_TEST_TIMEOUT"].flatMap { Int($0) } ?? 300)
    }

    /// The result of `module`; the first call starts every module in `all`.
    func result(of module: String, python: String, all: [String]) async -> ModuleResult {
        for name in [module] + all where runs[name] == nil {
            runs[name] = Task { await self.run(name, python: python) }
        }
        return await runs[module]!.value
    }

    private func run(_ module: String, python: String) async -> ModuleResult {
        await acquire()
        defer { release() }
        do {
            return try await Self.execute(module, python: python, timeout: timeout)
        } catch {
            return ModuleResult(status: -1, timedOut: false, seconds: 0, output: "could not run \(module): \(error)")
        }
    }

    private func acquire() async {
        if running < width {
            running += 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            running -= 1
        } else {
            waiting.removeFirst().resume()
        }
    }

    /// Runs `python -m unittest -v module` with its output in a temporary file (a pipe could fill
    /// up and stall the child while nobody reads it), polling for the exit so that the `Process`
    /// never leaves this task.
    private static func execute(_ module: String, python: String, timeout: Duration) async throws -> ModuleResult {
        let logURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("sidecast-\(module)-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown)
        }
        defer { try? FileManager.default.removeItem(at: logURL) }
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-m", "unittest", "-v", module]
        process.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONUNBUFFERED"] = "1"
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log

        let clock = ContinuousClock()
        let start = clock.now
        try process.run()
        var timedOut = false
        var killedAt: ContinuousClock.Instant?
        while process.isRunning {
            let now = clock.now
            if !timedOut, now - start > timeout {
                timedOut = true
                killedAt = now
                process.terminate()
            } else if let killedAt, now - killedAt > .seconds(5) {
                kill(process.processIdentifier, SIGKILL)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let output = (try? String(contentsOf: logURL, encoding: .utf8)) ?? "(output unreadable)"
        return ModuleResult(
            status: process.terminationStatus,
            timedOut: timedOut,
            seconds: Int((clock.now - start).components.seconds),
            output: output
        )
    }
}
