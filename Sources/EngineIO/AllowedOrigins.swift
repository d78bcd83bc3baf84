/// The web origins whose pages may reach the Engine.IO path: the list CORS answers with, and
/// the list every request's `Origin` header is checked against. A browser sends `Origin` with
/// every WebSocket handshake and every cross-origin request, so a page from an origin not on
/// the list cannot open a session in its visitor's name (cross-site WebSocket hijacking).
///
/// An entry is `*` (any origin), an exact origin as a browser writes it (`scheme://host` or
/// `scheme://host:port`, no path, no default port), or a wildcard subdomain
/// (`https://*.example.com`), which matches any host under `example.com`, at any depth, with
/// the same scheme and port, and not `example.com` itself. Scheme and host are compared
/// without regard to case, as browsers write them in lower case.
public struct AllowedOrigins: Sendable, Equatable {
    enum Entry: Sendable, Equatable {
        case any
        /// A whole origin, lower-cased.
        case exact(String)
        /// `scheme://*.suffix[:port]`: `prefix` is "scheme://", `domain` is ".suffix" (with its
        /// leading dot, so that only whole labels match), `port` is ":port" or "".
        case subdomains(prefix: String, domain: String, port: String)
    }

    /// Why an entry is not an origin.
    public struct InvalidEntry: Error, CustomStringConvertible, Sendable {
        public let entry: String
        public let reason: String
        public var description: String { "\(self.reason), got \"\(self.entry)\"" }
    }

    let entries: [Entry]

    /// No origin listed: no CORS headers, and no `Origin` check.
    public static let none = AllowedOrigins(entries: [])

    private init(entries: [Entry]) {
        self.entries = entries
    }

    public init(_ list: [String]) throws(InvalidEntry) {
        var entries: [Entry] = []
        for text in list {
            entries.append(try Self.parse(text))
        }
        self.entries = entries
    }

    /// Whether any origin is listed; without one there is no check at all.
    public var isEmpty: Bool { self.entries.isEmpty }

    var allowsAnyOrigin: Bool { self.entries.contains(.any) }

    /// Whether a request carrying `Origin: origin` may proceed. With no origin listed, every
    /// origin may.
    public func allows(_ origin: String) -> Bool {
        if self.entries.isEmpty { return true }
        let origin = origin.lowercased()
        return self.entries.contains { entry in
            switch entry {
            case .any:
                return true
            case .exact(let allowed):
                return origin == allowed
            case .subdomains(let prefix, let domain, let port):
                guard origin.hasPrefix(prefix), origin.hasSuffix(domain + port) else { return false }
                let subdomain = origin.dropFirst(prefix.count).dropLast(domain.count + port.count)
                return Self.isHostName(subdomain)
            }
        }
    }

    private static func parse(_ text: String) throws(InvalidEntry) -> Entry {
        if text == "*" { return .any }
        let lowered = text.lowercased()
        func invalid(_ reason: String) -> InvalidEntry { InvalidEntry(entry: text, reason: reason) }
        guard let separator = lowered.firstRange(of: "://") else {
            throw invalid("an origin is '*' or scheme://host[:port], like https://app.example.com")
        }
        let scheme = lowered[..<separator.lowerBound]
        let authority = lowered[separator.upperBound...]
        guard let first = scheme.first, first.isLetter,
              scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) })
        else {
            throw invalid("an origin starts with a scheme, like https://")
        }
        if authority.contains(where: { "/?#".contains($0) }) {
            throw invalid("an origin has no path: write scheme://host[:port] with no trailing '/'")
        }
        var host = authority
        var port = Substring("")
        if let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") {
            host = authority[..<colon]
            port = authority[colon...]
            guard port.count > 1, port.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw invalid("an origin's port is a number")
            }
        }
        guard host.hasPrefix("*.") else {
            guard !host.isEmpty, !host.contains("*"), !host.contains("@"), !host.contains(where: \.isWhitespace) else {
                throw invalid("an origin is scheme://host[:port]; '*' may only stand for subdomains, as in https://*.example.com")
            }
            return .exact(lowered)
        }
        let domain = host.dropFirst(2)
        guard Self.isHostName(domain) else {
            throw invalid("a wildcard origin names the domain whose subdomains it allows, as in https://*.example.com")
        }
        return .subdomains(prefix: String(scheme) + "://", domain: "." + domain, port: String(port))
    }

    /// Dot-separated labels of letters, digits and hyphens, none empty.
    private static func isHostName(_ text: Substring) -> Bool {
        !text.isEmpty && text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }
}
