import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SidecastServer

/// `sidecast`: resolves its settings from flags, `SIDECAST_<NAME>` variables and an optional
/// TOML config file, then runs one node until SIGTERM (which drains) or SIGINT.
///
/// Options have no ArgumentParser defaults, so an option left out is `nil` and the environment,
/// the config file or `Setting.defaultValue` can supply it; `ResolvedSettings` does that in one place.
/// Numeric options take the next argument whatever it looks like, so that `--ping-interval -1`
/// reaches the range check instead of reading as a flag named `-1`.
@main
struct SidecastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecast",
        abstract: "A Socket.IO v4 server for backends in any language, over NDJSON on a Unix socket.",
        discussion: """
            Every option can also be set through the environment variable named after it, \
            e.g. SIDECAST_PORT=3001 or SIDECAST_CORS_ORIGIN=https://a.example,https://b.example \
            (repeatable options take a comma-separated list), and in the TOML file given by --config, \
            under the flag's name: port = 3001, cors-origin = ["https://a.example"]. \
            A flag wins over the environment, which wins over the config file.
            """,
        version: Sidecast.version
    )

    @Option(help: ArgumentHelp("TOML file of settings, keyed by flag name. (env: SIDECAST_CONFIG)", valueName: "path"))
    var config: String?

    @Flag(help: "Print the effective configuration as TOML, Redis password masked, and exit.")
    var printConfig = false

    @Option(help: Setting.host.help) var host: String?
    @Option(parsing: .unconditional, help: Setting.port.help) var port: Int?
    @Option(help: Setting.path.help) var path: String?
    @Option(help: Setting.tlsCert.help) var tlsCert: String?
    @Option(help: Setting.tlsKey.help) var tlsKey: String?
    @Option(name: .customLong(Setting.tlsCA.rawValue), help: Setting.tlsCA.help) var tlsCA: String?
    @Option(help: Setting.socket.help) var socket: String?
    @Option(help: Setting.socketMode.help) var socketMode: String?
    @Option(name: .customLong(Setting.corsOrigin.rawValue), help: Setting.corsOrigin.help) var corsOrigins: [String] = []
    @Option(parsing: .unconditional, help: Setting.pingInterval.help) var pingInterval: Int?
    @Option(parsing: .unconditional, help: Setting.pingTimeout.help) var pingTimeout: Int?
    @Option(parsing: .unconditional, help: Setting.connectTimeout.help) var connectTimeout: Int?
    @Option(parsing: .unconditional, help: Setting.maxPayload.help) var maxPayload: Int?
    @Option(parsing: .unconditional, help: Setting.maxBuffered.help) var maxBuffered: Int?
    @Option(parsing: .unconditional, help: Setting.maxConnections.help) var maxConnections: Int?
    @Option(parsing: .unconditional, help: Setting.threads.help) var threads: Int?
    @Flag(name: .customLong(Setting.allowEIO3.rawValue), inversion: .prefixedNo, help: Setting.allowEIO3.help) var allowEIO3: Bool?
    @Option(help: Setting.parser.help) var parser: String?
    @Flag(inversion: .prefixedNo, help: Setting.perMessageDeflate.help) var perMessageDeflate: Bool?
    @Flag(inversion: .prefixedNo, help: Setting.httpCompression.help) var httpCompression: Bool?
    @Option(name: .customLong(Setting.namespace.rawValue), help: Setting.namespace.help) var namespaces: [String] = []
    @Option(name: .customLong(Setting.authorize.rawValue), help: Setting.authorize.help) var authorizedNamespaces: [String] = []
    @Option(parsing: .unconditional, help: Setting.backendGrace.help) var backendGrace: Double?
    @Option(parsing: .unconditional, help: Setting.recoveryWindow.help) var recoveryWindow: Int?
    @Flag(inversion: .prefixedNo, help: Setting.recoverySkipAuthorization.help) var recoverySkipAuthorization: Bool?
    @Option(parsing: .unconditional, help: Setting.recoveryMaxPackets.help) var recoveryMaxPackets: Int?
    @Option(help: Setting.redis.help) var redis: String?
    @Option(help: Setting.redisPrefix.help) var redisPrefix: String?
    @Option(name: .customLong(Setting.redisSentinel.rawValue), help: Setting.redisSentinel.help) var redisSentinels: [String] = []
    @Option(help: Setting.redisMaster.help) var redisMaster: String?
    @Option(name: .customLong(Setting.redisCluster.rawValue), help: Setting.redisCluster.help) var redisClusterNodes: [String] = []
    @Flag(inversion: .prefixedNo, help: Setting.redisSharded.help) var redisSharded: Bool?
    @Flag(inversion: .prefixedNo, help: Setting.relaySessions.help) var relaySessions: Bool?
    @Option(help: Setting.redisSubscriptionMode.help) var redisSubscriptionMode: String?
    @Flag(inversion: .prefixedNo, help: Setting.redisStreams.help) var redisStreams: Bool?
    @Option(help: Setting.redisStreamName.help) var redisStreamName: String?
    @Option(parsing: .unconditional, help: Setting.redisStreamMaxLen.help) var redisStreamMaxLen: Int?
    @Option(parsing: .unconditional, help: Setting.redisStreamReadCount.help) var redisStreamReadCount: Int?
    @Option(help: Setting.redisSessionKeyPrefix.help) var redisSessionKeyPrefix: String?
    @Option(help: Setting.redisPassword.help) var redisPassword: String?
    @Option(help: Setting.redisSentinelUsername.help) var redisSentinelUsername: String?
    @Option(help: Setting.redisSentinelPassword.help) var redisSentinelPassword: String?
    @Option(parsing: .unconditional, help: Setting.requestsTimeout.help) var requestsTimeout: Int?
    @Option(help: Setting.adminHost.help) var adminHost: String?
    @Option(parsing: .unconditional, help: Setting.adminPort.help) var adminPort: Int?
    @Option(parsing: .unconditional, help: Setting.drainDelay.help) var drainDelay: Double?
    @Option(parsing: .unconditional, help: Setting.drainTimeout.help) var drainTimeout: Double?
    @Flag(inversion: .prefixedNo, help: Setting.requireBackend.help) var requireBackend: Bool?
    @Option(help: Setting.logLevel.help) var logLevel: String?
    @Option(help: Setting.logFormat.help) var logFormat: String?

    /// The settings given as flags; an empty repeatable option counts as not given.
    private var flagLayer: SettingLayer {
        var values: [Setting: SettingValue] = [:]
        values[.host] = host.map(SettingValue.string)
        values[.port] = port.map(SettingValue.integer)
        values[.path] = path.map(SettingValue.string)
        values[.tlsCert] = tlsCert.map(SettingValue.string)
        values[.tlsKey] = tlsKey.map(SettingValue.string)
        values[.tlsCA] = tlsCA.map(SettingValue.string)
        values[.socket] = socket.map(SettingValue.string)
        values[.socketMode] = socketMode.map(SettingValue.string)
        values[.corsOrigin] = corsOrigins.isEmpty ? nil : .list(corsOrigins)
        values[.pingInterval] = pingInterval.map(SettingValue.integer)
        values[.pingTimeout] = pingTimeout.map(SettingValue.integer)
        values[.connectTimeout] = connectTimeout.map(SettingValue.integer)
        values[.maxPayload] = maxPayload.map(SettingValue.integer)
        values[.maxBuffered] = maxBuffered.map(SettingValue.integer)
        values[.maxConnections] = maxConnections.map(SettingValue.integer)
        values[.threads] = threads.map(SettingValue.integer)
        values[.allowEIO3] = allowEIO3.map(SettingValue.boolean)
        values[.parser] = parser.map(SettingValue.string)
        values[.perMessageDeflate] = perMessageDeflate.map(SettingValue.boolean)
        values[.httpCompression] = httpCompression.map(SettingValue.boolean)
        values[.namespace] = namespaces.isEmpty ? nil : .list(namespaces)
        values[.authorize] = authorizedNamespaces.isEmpty ? nil : .list(authorizedNamespaces)
        values[.backendGrace] = backendGrace.map(SettingValue.number)
        values[.recoveryWindow] = recoveryWindow.map(SettingValue.integer)
        values[.recoverySkipAuthorization] = recoverySkipAuthorization.map(SettingValue.boolean)
        values[.recoveryMaxPackets] = recoveryMaxPackets.map(SettingValue.integer)
        values[.redis] = redis.map(SettingValue.string)
        values[.redisPrefix] = redisPrefix.map(SettingValue.string)
        values[.redisSentinel] = redisSentinels.isEmpty ? nil : .list(redisSentinels)
        values[.redisMaster] = redisMaster.map(SettingValue.string)
        values[.redisCluster] = redisClusterNodes.isEmpty ? nil : .list(redisClusterNodes)
        values[.redisPassword] = redisPassword.map(SettingValue.string)
        values[.redisSentinelUsername] = redisSentinelUsername.map(SettingValue.string)
        values[.redisSentinelPassword] = redisSentinelPassword.map(SettingValue.string)
        values[.redisSubscriptionMode] = redisSubscriptionMode.map(SettingValue.string)
        values[.requestsTimeout] = requestsTimeout.map(SettingValue.integer)
        values[.adminHost] = adminHost.map(SettingValue.string)
        values[.adminPort] = adminPort.map(SettingValue.integer)
        values[.drainDelay] = drainDelay.map(SettingValue.number)
        values[.drainTimeout] = drainTimeout.map(SettingValue.number)
        values[.requireBackend] = requireBackend.map(SettingValue.boolean)
        values[.redisSharded] = redisSharded.map(SettingValue.boolean)
        values[.relaySessions] = relaySessions.map(SettingValue.boolean)
        values[.redisStreams] = redisStreams.map(SettingValue.boolean)
        values[.redisStreamName] = redisStreamName.map(SettingValue.string)
        values[.redisStreamMaxLen] = redisStreamMaxLen.map(SettingValue.integer)
        values[.redisStreamReadCount] = redisStreamReadCount.map(SettingValue.integer)
        values[.redisSessionKeyPrefix] = redisSessionKeyPrefix.map(SettingValue.string)
        values[.logLevel] = logLevel.map(SettingValue.string)
        values[.logFormat] = logFormat.map(SettingValue.string)
        return SettingLayer(source: .flag, values: values)
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var layers = [flagLayer, try SettingLayer.environment(environment)]
        if let path = config ?? environment["SIDECAST_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            layers.append(try SettingLayer.file(at: path))
        }
        let settings = ResolvedSettings(layers: layers)
        let cpus = CPUAllowance.current()
        let configuration = try settings.makeConfiguration(cpus: cpus)
        let level = try settings.logLevel
        let format = try settings.logFormat
        if printConfig {
            let capacity = ClientCapacity(configuration: configuration, limit: .raisingSoftLimit())
            let notes = [Setting.maxConnections: capacity.derivation, .threads: cpus.derivation]
            print(settings.toml(notes: notes), terminator: "")
            return
        }

        LoggingSystem.bootstrap { label in
            var handler: any LogHandler
            switch format {
            case .text: handler = StreamLogHandler.standardError(label: label)
            case .json: handler = JSONLogHandler(label: label)
            }
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sidecast")
        let sidecast = Sidecast(configuration: configuration, logger: logger)
        // `Sidecast` traps SIGTERM (drain) and SIGINT (stop at once) itself, so the group traps
        // none, and its returning is the normal end. The name keeps the configuration, with its
        // Redis password, out of the group's log lines.
        let service = ServiceGroupConfiguration.ServiceConfiguration(
            service: sidecast,
            successTerminationBehavior: .gracefullyShutdownGroup,
            serviceName: "sidecast"
        )
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        do {
            try await group.run()
        } catch let error as SidecastStartError {
            logger.critical("\(error.description)")
            throw ExitCode.failure
        }
    }
}
