import Foundation
import TOMLKit

/// Where a setting's value came from; errors and `--print-config` name it.
enum SettingSource: Equatable, Sendable {
    case flag
    case environment
    case file(path: String)
    case defaultValue

    /// Names the value the way the operator wrote it: `--port`, `SIDECAST_PORT`, `port in sidecast.toml`.
    func naming(_ setting: Setting) -> String {
        switch self {
        case .flag: return setting.flag
        case .environment: return setting.environmentVariable
        case .file(let path): return "\(setting.rawValue) in \(path)"
        case .defaultValue: return "the default \(setting.rawValue)"
        }
    }
}

/// The values one source sets, type-checked but not yet range-checked.
struct SettingLayer: Sendable {
    var source: SettingSource
    var values: [Setting: SettingValue]

    /// Reads every `SIDECAST_<NAME>` variable that is set and not empty.
    static func environment(_ environment: [String: String]) throws(ConfigurationError) -> SettingLayer {
        var values: [Setting: SettingValue] = [:]
        for setting in Setting.allCases {
            guard let text = environment[setting.environmentVariable], !text.isEmpty else { continue }
            guard let value = SettingValue(parsing: text, as: setting.kind) else {
                throw ConfigurationError("\(setting.environmentVariable) must be \(setting.kind.expectation), got '\(text)'")
            }
            values[setting] = value
        }
        return SettingLayer(source: .environment, values: values)
    }

    /// Reads a TOML config file whose keys are the flag names; any other key is an error, so a
    /// typo cannot silently leave a default in place.
    static func file(at path: String) throws(ConfigurationError) -> SettingLayer {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("cannot read the config file \(path): \(error.localizedDescription)")
        }
        return try parse(toml: text, path: path)
    }

    static func parse(toml text: String, path: String) throws(ConfigurationError) -> SettingLayer {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let position = error.source.begin
            throw ConfigurationError("\(path):\(position.line):\(position.column): \(error.description)")
        } catch {
            throw ConfigurationError("\(path): \(error)")
        }
        var values: [Setting: SettingValue] = [:]
        for key in table.keys {
            guard let setting = Setting(rawValue: key) else {
                throw ConfigurationError(unknownKey: key, path: path)
            }
            guard let toml = table[key], let value = SettingValue(toml: toml, as: setting.kind) else {
                let found = table[key].map { "a TOML \($0.type): \($0.debugDescription)" } ?? "nothing"
                throw ConfigurationError("\(key) in \(path) must be \(setting.kind.expectation), got \(found)")
            }
            values[setting] = value
        }
        return SettingLayer(source: .file(path: path), values: values)
    }
}

/// A setting that cannot be used as given; the message names the setting and where it was set.
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }

    init(unknownKey key: String, path: String) {
        var message = "unknown key '\(key)' in \(path)"
        if let setting = Setting(rawValue: key.replacingOccurrences(of: "_", with: "-").lowercased()) {
            message += "; did you mean '\(setting.rawValue)'?"
        } else {
            message += "; the keys are the flag names: "
                + Setting.allCases.map(\.rawValue).joined(separator: ", ")
        }
        self.init(message)
    }
}

extension Setting.Kind {
    /// "must be …" in error messages.
    var expectation: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .number: return "a number"
        case .boolean: return "true or false"
        case .list: return "a list of strings"
        }
    }
}

extension SettingValue {
    /// Reads an environment variable's text; a list is comma-separated.
    init?(parsing text: String, as kind: Setting.Kind) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        switch kind {
        case .string:
            self = .string(text)
        case .integer:
            guard let value = Int(trimmed) else { return nil }
            self = .integer(value)
        case .number:
            guard let value = Double(trimmed) else { return nil }
            self = .number(value)
        case .boolean:
            switch trimmed.lowercased() {
            case "true", "1": self = .boolean(true)
            case "false", "0": self = .boolean(false)
            default: return nil
            }
        case .list:
            self = .list(
                text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            )
        }
    }

    /// Reads a TOML value; a number may be written as an integer, a list as a single string.
    init?(toml: any TOMLValueConvertible, as kind: Setting.Kind) {
        switch kind {
        case .string:
            guard let value = toml.string else { return nil }
            self = .string(value)
        case .integer:
            guard let value = toml.int else { return nil }
            self = .integer(value)
        case .number:
            guard let value = toml.double ?? toml.int.map(Double.init) else { return nil }
            self = .number(value)
        case .boolean:
            guard let value = toml.bool else { return nil }
            self = .boolean(value)
        case .list:
            if let value = toml.string {
                self = .list([value])
                return
            }
            guard let array = toml.array else { return nil }
            var strings: [String] = []
            for element in array {
                guard let string = element.string else { return nil }
                strings.append(string)
            }
            self = .list(strings)
        }
    }
}
