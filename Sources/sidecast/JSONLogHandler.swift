import Foundation
import Logging

/// How `sidecast` writes its logs to stderr.
enum LogFormat: String, Sendable {
    /// swift-log's `StreamLogHandler` lines, for people.
    case text
    /// One JSON object per line, for log collectors (journald, Loki, Elasticsearch, ...).
    case json
}

/// Writes each record to stderr as one line of JSON:
/// `{"ts":"2025-01-31T12:00:00.123Z","level":"info","label":"sidecast","msg":"...", <metadata>}`.
///
/// The four fixed fields come first so the lines stay readable with `tail -f`; metadata keys
/// follow in sorted order, and a metadata key equal to a fixed field is dropped rather than
/// emitting a duplicate key.
struct JSONLogHandler: LogHandler {
    private static let fixedFields: Set<String> = ["ts", "level", "label", "msg", "error"]
    private static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    /// Records of different loggers are written from different threads; one lock keeps each
    /// record's line whole, whatever the size.
    private static let writeLock = NSLock()

    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() {
            fields.merge(provided) { _, new in new }
        }
        if let explicit = event.metadata {
            fields.merge(explicit) { _, new in new }
        }
        var line = "{\"ts\":" + quotedLiteral(Self.timestamp.format(Date()))
        line += ",\"level\":" + quotedLiteral(event.level.rawValue)
        line += ",\"label\":" + quotedLiteral(label)
        line += ",\"msg\":" + quotedLiteral(event.message.description)
        if let error = event.error {
            line += ",\"error\":" + quotedLiteral(String(describing: error))
        }
        for key in fields.keys.sorted() where !Self.fixedFields.contains(key) {
            line += "," + quotedLiteral(key) + ":" + Self.json(fields[key] ?? .string(""))
        }
        line += "}\n"
        Self.writeLock.lock()
        defer { Self.writeLock.unlock() }
        FileHandle.standardError.write(Data(line.utf8))
    }

    private static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string):
            return quotedLiteral(string)
        case .stringConvertible(let convertible):
            return quotedLiteral(convertible.description)
        case .array(let values):
            return "[" + values.map(json).joined(separator: ",") + "]"
        case .dictionary(let dictionary):
            let members = dictionary.keys.sorted().map { quotedLiteral($0) + ":" + json(dictionary[$0] ?? .string("")) }
            return "{" + members.joined(separator: ",") + "}"
        }
    }
}

/// `value` in double quotes with the escapes that a JSON string and a TOML basic string share,
/// so both the JSON logs and `--print-config` can use it.
func quotedLiteral(_ value: String) -> String {
    var quoted = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": quoted += "\\\""
        case "\\": quoted += "\\\\"
        case "\n": quoted += "\\n"
        case "\r": quoted += "\\r"
        case "\t": quoted += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            let hex = String(scalar.value, radix: 16, uppercase: true)
            quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default:
            quoted.unicodeScalars.append(scalar)
        }
    }
    return quoted + "\""
}
