/// Where Redis listens and how to log in:
/// `redis://[user:password@]host[:port][/db]`, `redis://:password@host`, or
/// `unix:///path/redis.sock[?db=N&password=P&user=U]`.
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    /// The TCP host; nil for a Unix socket.
    public var host: String?
    public var port: Int
    /// The Unix socket path; nil for TCP.
    public var unixPath: String?
    /// The ACL user for `AUTH user password`; nil means `AUTH password` (the default user).
    public var user: String?
    public var password: String?
    /// The database to `SELECT` after connecting; nil keeps Redis's default, 0.
    public var database: Int?

    public static let defaultPort = 6379

    public init(_ string: String) throws {
        guard let separator = string.firstRange(of: "://") else {
            throw RedisURLError("expected redis://host:port or unix:///path/to/redis.sock")
        }
        let scheme = string[..<separator.lowerBound].lowercased()
        let rest = string[separator.upperBound...]
        self.host = nil
        self.port = RedisURL.defaultPort
        self.unixPath = nil
        self.user = nil
        self.password = nil
        self.database = nil
        switch scheme {
        case "redis":
            try self.parseTCP(rest)
        case "unix":
            try self.parseUnix(rest)
        case "rediss":
            throw RedisURLError("TLS (rediss://) is not supported")
        default:
            throw RedisURLError("unsupported scheme '\(scheme)': use redis:// or unix://")
        }
    }

    /// The URL with the password masked, for logs.
    public var description: String {
        let credentials: String
        switch (self.user, self.password) {
        case (let user?, _?):
            credentials = "\(user):***@"
        case (nil, _?):
            credentials = ":***@"
        case (_, nil):
            credentials = ""
        }
        if let path = self.unixPath {
            var query: [String] = []
            if let database = self.database { query.append("db=\(database)") }
            if let user = self.user { query.append("user=\(user)") }
            if self.password != nil { query.append("password=***") }
            return "unix://\(path)" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        }
        let host = self.host ?? ""
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "redis://\(credentials)\(hostPart):\(self.port)" + (self.database.map { "/\($0)" } ?? "")
    }

    private mutating func parseTCP(_ rest: Substring) throws {
        if rest.contains("?") || rest.contains("#") {
            throw RedisURLError("query strings are not supported in redis:// URLs; put the database in the path (redis://host:port/2)")
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...]

        if let at = authority.lastIndex(of: "@") {
            try self.parseCredentials(authority[..<at])
            authority = authority[authority.index(after: at)...]
        }
        try self.parseHostAndPort(authority)

        let database = path.drop(while: { $0 == "/" })
        if !database.isEmpty {
            self.database = try RedisURL.parseDatabase(database)
        }
    }

    private mutating func parseCredentials(_ userInfo: Substring) throws {
        guard let colon = userInfo.firstIndex(of: ":") else {
            throw RedisURLError("a user needs a password: redis://user:password@host, or redis://:password@host for a password alone")
        }
        let user = try percentDecoded(userInfo[..<colon])
        let password = try percentDecoded(userInfo[userInfo.index(after: colon)...])
        if password.isEmpty {
            if !user.isEmpty { throw RedisURLError("user '\(user)' has an empty password") }
            return
        }
        self.user = user.isEmpty ? nil : user
        self.password = password
    }

    private mutating func parseHostAndPort(_ authority: Substring) throws {
        var host: Substring
        var port: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw RedisURLError("unterminated IPv6 address '\(authority)'")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw RedisURLError("unexpected '\(after)' after the IPv6 address") }
                port = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            port = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        if host.isEmpty { throw RedisURLError("missing host") }
        self.host = String(host)
        if let port {
            guard !port.isEmpty, port.allSatisfy(\.isASCIIDigit), let number = Int(port), (1...65535).contains(number) else {
                throw RedisURLError("port '\(port)' is not a number from 1 to 65535")
            }
            self.port = number
        }
    }

    private mutating func parseUnix(_ rest: Substring) throws {
        let queryStart = rest.firstIndex(of: "?") ?? rest.endIndex
        let path = try percentDecoded(rest[..<queryStart])
        guard path.hasPrefix("/"), path.count > 1 else {
            throw RedisURLError("a unix URL needs an absolute socket path: unix:///path/to/redis.sock")
        }
        self.unixPath = path
        guard queryStart < rest.endIndex else { return }
        for item in rest[rest.index(after: queryStart)...].split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = pair.count == 2 ? try percentDecoded(pair[1]) : ""
            switch pair[0] {
            case "db":
                self.database = try RedisURL.parseDatabase(Substring(value))
            case "password":
                self.password = value.isEmpty ? nil : value
            case "user":
                self.user = value.isEmpty ? nil : value
            default:
                throw RedisURLError("unknown parameter '\(pair[0])' in a unix URL (known: db, password, user)")
            }
        }
        if self.user != nil && self.password == nil {
            throw RedisURLError("a user needs a password")
        }
    }

    private static func parseDatabase(_ text: Substring) throws -> Int {
        guard !text.isEmpty, text.allSatisfy(\.isASCIIDigit), let number = Int(text), number <= Int(Int32.max) else {
            throw RedisURLError("database '\(text)' is not a non-negative number")
        }
        return number
    }
}

/// Why a string is not a usable Redis URL.
public struct RedisURLError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String

    init(_ reason: String) {
        self.reason = reason
    }

    public var description: String {
        "invalid Redis URL: \(self.reason)"
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool {
        self >= "0" && self <= "9"
    }
}

/// Decodes `%XX` escapes so passwords can hold `@`, `:` and `/`.
private func percentDecoded(_ text: Substring) throws -> String {
    guard text.contains("%") else { return String(text) }
    var bytes: [UInt8] = []
    var utf8 = text.utf8[...]
    while let byte = utf8.popFirst() {
        guard byte == UInt8(ascii: "%") else {
            bytes.append(byte)
            continue
        }
        let digits = utf8.prefix(2)
        guard digits.count == 2, let value = UInt8(String(decoding: digits, as: UTF8.self), radix: 16) else {
            throw RedisURLError("bad percent escape (write %XX with two hex digits)")
        }
        bytes.append(value)
        utf8 = utf8.dropFirst(2)
    }
    return String(decoding: bytes, as: UTF8.self)
}
