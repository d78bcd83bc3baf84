import Logging
import NIOCore
import SidecastServer

/// Every setting's effective value and where it came from: a flag wins over the environment,
/// which wins over the config file, which wins over the default.
///
/// Built from already-read layers, so resolution and validation are pure functions of their inputs.
struct ResolvedSettings: Sendable {
    /// One setting's winning value and the source it won from.
    struct Entry: Sendable {
        var value: SettingValue
        var source: SettingSource
    }

    private var entries: [Setting: Entry] = [:]

    /// `layers` in precedence order, the highest first; a setting no layer sets takes its default.
    init(layers: [SettingLayer]) {
        for setting in Setting.allCases {
            if let layer = layers.first(where: { $0.values[setting] != nil }), let value = layer.values[setting] {
                entries[setting] = Entry(value: value, source: layer.source)
            } else {
                entries[setting] = Entry(value: setting.defaultValue, source: .defaultValue)
            }
        }
    }

    subscript(setting: Setting) -> Entry {
        // `init` fills every case of `Setting`.
        entries[setting] ?? Entry(value: setting.defaultValue, source: .defaultValue)
    }

    var logLevel: Logger.Level {
        get throws(ConfigurationError) {
            let text = try string(.logLevel)
            guard let level = Logger.Level(rawValue: text) else {
                throw invalid(.logLevel, "must be one of trace, debug, info, notice, warning, error, critical", text)
            }
            return level
        }
    }

    var logFormat: LogFormat {
        get throws(ConfigurationError) {
            let text = try string(.logFormat)
            guard let format = LogFormat(rawValue: text) else { throw invalid(.logFormat, "must be text or json", text) }
            return format
        }
    }

    /// Checks every value's range and builds the server's configuration; `cpus` is what
    /// `threads = 0` stands for.
    func makeConfiguration(cpus: CPUAllowance) throws(ConfigurationError) -> SidecastConfiguration {
        var configuration = SidecastConfiguration()
        configuration.host = try nonEmptyString(.host)
        configuration.port = try port(.port)
        let path = try string(.path)
        guard path.hasPrefix("/") else { throw invalid(.path, "must start with '/'", path) }
        configuration.path = path.hasSuffix("/") ? path : path + "/"
        configuration.tls = try tlsFiles()
        configuration.socketPath = try nonEmptyString(.socket)
        let socketMode = try string(.socketMode)
        guard let mode = UInt16(socketMode, radix: 8), mode <= 0o7777 else {
            throw invalid(.socketMode, "must be an octal file mode, like \"0660\"", socketMode)
        }
        configuration.socketMode = mode
        configuration.corsOrigins = try list(.corsOrigin)
        for origin in configuration.corsOrigins {
            if let problem = SidecastConfiguration.corsOriginProblem(origin) {
                throw invalid(.corsOrigin, "must be an origin: \(problem)", origin)
            }
        }
        configuration.pingInterval = .milliseconds(Int64(try positiveInteger(.pingInterval)))
        configuration.pingTimeout = .milliseconds(Int64(try positiveInteger(.pingTimeout)))
        configuration.connectTimeout = .milliseconds(Int64(try positiveInteger(.connectTimeout)))
        configuration.maxPayload = try positiveInteger(.maxPayload)
        configuration.maxBuffered = try positiveInteger(.maxBuffered)
        configuration.maxConnections = try integer(.maxConnections)
        guard configuration.maxConnections >= 0 else {
            throw invalid(.maxConnections, "must be 0 (derived from the open-file limit) or more", String(configuration.maxConnections))
        }
        let threads = try integer(.threads)
        guard (0...Sidecast.maximumThreads).contains(threads) else {
            throw invalid(.threads, "must be 0 (one per CPU this process may run on) to \(Sidecast.maximumThreads)", String(threads))
        }
        configuration.threads = threads == 0 ? min(cpus.count, Sidecast.maximumThreads) : threads
        configuration.allowEIO3 = try boolean(.allowEIO3)
        let parser = try string(.parser)
        guard let parserKind = PacketParser(rawValue: parser) else {
            throw invalid(.parser, "must be default or msgpack", parser)
        }
        configuration.parser = parserKind
        configuration.perMessageDeflate = try boolean(.perMessageDeflate)
        configuration.httpCompression = try boolean(.httpCompression)
        let namespaces = try list(.namespace)
        if let bad = namespaces.first(where: { !$0.hasPrefix("/") }) {
            throw invalid(.namespace, "must start with '/'", bad)
        }
        configuration.namespaces = namespaces.isEmpty ? ["/"] : Set(namespaces)
        let authorized = try list(.authorize)
        if let bad = authorized.first(where: { !$0.hasPrefix("/") }) {
            throw invalid(.authorize, "must start with '/'", bad)
        }
        configuration.authorizedNamespaces = Set(authorized)
        configuration.backendGrace = try seconds(.backendGrace, allowingZero: true)
        let recoveryWindow = try integer(.recoveryWindow)
        guard recoveryWindow >= 0 else {
            throw invalid(.recoveryWindow, "must be 0 (recovery off) or more milliseconds", String(recoveryWindow))
        }
        configuration.recoveryWindow = .milliseconds(Int64(recoveryWindow))
        configuration.recoverySkipAuthorization = try boolean(.recoverySkipAuthorization)
        configuration.recoveryMaxPackets = try positiveInteger(.recoveryMaxPackets)
        let redis = try string(.redis)
        configuration.redisURL = redis.isEmpty ? nil : redis
        configuration.redisPrefix = try nonEmptyString(.redisPrefix)
        configuration.redisSentinels = try addresses(.redisSentinel)
        configuration.redisMasterName = try string(.redisMaster)
        configuration.redisClusterNodes = try addresses(.redisCluster)
        let password = try string(.redisPassword)
        configuration.redisPassword = password.isEmpty ? nil : password
        let sentinelUsername = try string(.redisSentinelUsername)
        let sentinelPassword = try string(.redisSentinelPassword)
        configuration.redisSentinelUsername = sentinelUsername.isEmpty ? nil : sentinelUsername
        configuration.redisSentinelPassword = sentinelPassword.isEmpty ? nil : sentinelPassword
        let modes = [Setting.redis, .redisSentinel, .redisCluster].filter { self[$0].value != $0.defaultValue }
        if modes.count > 1 {
            throw invalid(modes[1], "cannot be combined with \(self[modes[0]].source.naming(modes[0]))", self[modes[1]].value.helpDescription)
        }
        configuration.redisSharded = try boolean(.redisSharded)
        if configuration.redisSharded && configuration.redisURL == nil && configuration.redisClusterNodes.isEmpty {
            throw invalid(.redisSharded, "needs redis-cluster, or redis for a single Redis 7 server", "true")
        }
        let subscriptionMode = try string(.redisSubscriptionMode)
        guard let mode = RedisSubscriptionMode(rawValue: subscriptionMode) else {
            throw invalid(.redisSubscriptionMode, "must be static, dynamic or dynamic-private", subscriptionMode)
        }
        if mode != .dynamic && !configuration.redisSharded {
            throw invalid(.redisSubscriptionMode, "applies only with redis-sharded", subscriptionMode)
        }
        configuration.redisSubscriptionMode = mode
        configuration.redisStreams = try boolean(.redisStreams)
        if configuration.redisStreams && configuration.redisURL == nil {
            throw invalid(.redisStreams, "needs redis, the one Redis server holding the stream", "true")
        }
        if configuration.redisStreams && configuration.redisSharded {
            throw invalid(.redisStreams, "cannot be combined with redis-sharded", "true")
        }
        configuration.redisStreamName = try nonEmptyString(.redisStreamName)
        configuration.redisStreamMaxLen = try positiveInteger(.redisStreamMaxLen)
        configuration.redisStreamReadCount = try positiveInteger(.redisStreamReadCount)
        configuration.redisSessionKeyPrefix = try nonEmptyString(.redisSessionKeyPrefix)
        for setting in [Setting.redisStreamName, .redisStreamMaxLen, .redisStreamReadCount, .redisSessionKeyPrefix]
        where !configuration.redisStreams && self[setting].value != setting.defaultValue {
            throw invalid(setting, "applies only with redis-streams", self[setting].value.helpDescription)
        }
        if !configuration.redisSentinels.isEmpty && configuration.redisMasterName.isEmpty {
            throw invalid(.redisMaster, "must name the master Sentinel monitors when redis-sentinel is set", "\"\"")
        }
        for setting in [Setting.redisSentinelUsername, .redisSentinelPassword]
        where configuration.redisSentinels.isEmpty && self[setting].value != setting.defaultValue {
            throw invalid(setting, "applies only with redis-sentinel", setting == .redisSentinelPassword ? "\"***\"" : self[setting].value.helpDescription)
        }
        if configuration.redisSentinelUsername != nil && configuration.redisSentinelPassword == nil {
            throw invalid(.redisSentinelUsername, "needs redis-sentinel-password", self[.redisSentinelUsername].value.helpDescription)
        }
        configuration.requestsTimeout = .milliseconds(Int64(try positiveInteger(.requestsTimeout)))
        configuration.relaySessions = try boolean(.relaySessions)
        if configuration.relaySessions && configuration.redisURL == nil && configuration.redisSentinels.isEmpty
            && configuration.redisClusterNodes.isEmpty {
            throw invalid(.relaySessions, "needs redis, redis-sentinel or redis-cluster: the nodes relay over Redis", "true")
        }
        if configuration.relaySessions && configuration.redisStreams {
            throw invalid(.relaySessions, "relays over pub/sub channels, not yet with redis-streams", "true")
        }
        configuration.adminHost = try nonEmptyString(.adminHost)
        configuration.adminPort = try port(.adminPort)
        configuration.drainDelay = try seconds(.drainDelay, allowingZero: true)
        configuration.drainTimeout = try seconds(.drainTimeout, allowingZero: false)
        guard configuration.drainTimeout >= configuration.drainDelay else {
            throw invalid(.drainTimeout, "must be at least drain-delay (\(self[.drainDelay].value.helpDescription))",
                self[.drainTimeout].value.helpDescription)
        }
        configuration.requireBackend = try boolean(.requireBackend)
        return configuration
    }

    /// The effective configuration as a config file: the same keys, each line saying where its
    /// value came from, and the Redis password masked so the output can be pasted into a ticket.
    /// `notes` add to a line what was worked out at start, like the number `max-connections = 0`
    /// stands for; the value itself stays as given, so the output still works as a config file.
    func toml(notes: [Setting: String] = [:]) -> String {
        var text = "# sidecast's effective configuration; precedence: flag > environment > config file > default.\n"
        for setting in Setting.allCases {
            let entry = self[setting]
            var value = entry.value
            if setting == .redis, case .string(let url) = value {
                value = .string(RedisURLMask.masking(url))
            }
            if setting == .redisPassword || setting == .redisSentinelPassword, case .string(let password) = value, !password.isEmpty {
                value = .string("***")
            }
            var origin = entry.source == .defaultValue ? "default" : "from " + entry.source.naming(setting)
            if let note = notes[setting] { origin += "; " + note }
            text += "\(setting.rawValue) = \(value.tomlLiteral)  # \(origin)\n"
        }
        return text
    }

    /// The TLS files, given together or not at all; whether they load is checked at start.
    private func tlsFiles() throws(ConfigurationError) -> ClientTLSFiles? {
        let certificate = try string(.tlsCert)
        let key = try string(.tlsKey)
        let clientCA = try string(.tlsCA)
        if certificate.isEmpty {
            if !key.isEmpty { throw invalid(.tlsKey, "needs tls-cert, the certificate of the key", key) }
            if !clientCA.isEmpty { throw invalid(.tlsCA, "needs tls-cert and tls-key, the server's own certificate and key", clientCA) }
            return nil
        }
        guard !key.isEmpty else { throw invalid(.tlsCert, "needs tls-key, the certificate's private key", certificate) }
        return ClientTLSFiles(certificatePath: certificate, keyPath: key, clientCAPath: clientCA.isEmpty ? nil : clientCA)
    }

    private func invalid(_ setting: Setting, _ rule: String, _ got: String) -> ConfigurationError {
        ConfigurationError("\(self[setting].source.naming(setting)) \(rule), got \(got)")
    }

    /// The layers check each value's kind against `Setting.kind`, so a mismatch here is a bug in
    /// `Setting`'s table; it is reported rather than trapped.
    private func mismatch(_ setting: Setting) -> ConfigurationError {
        ConfigurationError("internal error: \(setting.rawValue) holds \(self[setting].value), not \(setting.kind)")
    }

    private func string(_ setting: Setting) throws(ConfigurationError) -> String {
        guard case .string(let value) = self[setting].value else { throw mismatch(setting) }
        return value
    }

    private func nonEmptyString(_ setting: Setting) throws(ConfigurationError) -> String {
        let value = try string(setting)
        guard !value.isEmpty else { throw invalid(setting, "must not be empty", "\"\"") }
        return value
    }

    private func integer(_ setting: Setting) throws(ConfigurationError) -> Int {
        guard case .integer(let value) = self[setting].value else { throw mismatch(setting) }
        return value
    }

    private func positiveInteger(_ setting: Setting) throws(ConfigurationError) -> Int {
        let value = try integer(setting)
        guard value > 0 else { throw invalid(setting, "must be positive", String(value)) }
        return value
    }

    private func port(_ setting: Setting) throws(ConfigurationError) -> Int {
        let value = try integer(setting)
        guard (0...65535).contains(value) else { throw invalid(setting, "must be 0...65535", String(value)) }
        return value
    }

    private func seconds(_ setting: Setting, allowingZero: Bool) throws(ConfigurationError) -> TimeAmount {
        guard case .number(let value) = self[setting].value else { throw mismatch(setting) }
        guard value.isFinite, allowingZero ? value >= 0 : value > 0, value < 1e9 else {
            throw invalid(setting, allowingZero ? "must be seconds, 0 or more" : "must be seconds, more than 0", "\(value)")
        }
        return .nanoseconds(Int64((value * 1_000_000_000).rounded()))
    }

    private func boolean(_ setting: Setting) throws(ConfigurationError) -> Bool {
        guard case .boolean(let value) = self[setting].value else { throw mismatch(setting) }
        return value
    }

    /// A list of `host:port` addresses, each item also split at commas.
    private func addresses(_ setting: Setting) throws(ConfigurationError) -> [String] {
        try list(setting).flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    private func list(_ setting: Setting) throws(ConfigurationError) -> [String] {
        guard case .list(let value) = self[setting].value else { throw mismatch(setting) }
        return value
    }
}

extension SettingValue {
    /// The value as TOML writes it.
    var tomlLiteral: String {
        switch self {
        case .string(let value): return quotedLiteral(value)
        case .integer(let value): return String(value)
        case .number(let value): return String(value)
        case .boolean(let value): return String(value)
        case .list(let values): return "[" + values.map(quotedLiteral).joined(separator: ", ") + "]"
        }
    }
}

/// Hides the password of a Redis URL in either of the forms `--redis` accepts.
enum RedisURLMask {
    static func masking(_ url: String) -> String {
        guard let separator = url.firstRange(of: "://") else { return url }
        let scheme = url[..<separator.upperBound]
        let rest = url[separator.upperBound...]
        if scheme.lowercased() == "unix://" {
            guard let question = rest.firstIndex(of: "?") else { return url }
            let parameters = rest[rest.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false)
                .map { $0.lowercased().hasPrefix("password=") ? "password=***" : String($0) }
            return scheme + rest[...question] + parameters.joined(separator: "&")
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        let userInfo = rest[..<at]
        let user = userInfo.firstIndex(of: ":").map { userInfo[..<$0] + ":" } ?? ""
        return scheme + user + "***" + rest[at...]
    }
}
