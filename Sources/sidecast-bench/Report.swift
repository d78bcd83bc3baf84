import Foundation

/// One measured figure of a scenario.
struct Figure: Encodable {
    var name: String
    /// nil when it could not be measured (printed as "-", written as JSON null).
    var value: Double?
    var unit: String

    init(_ name: String, _ value: Double?, _ unit: String = "") {
        self.name = name
        self.value = value.flatMap { $0.isFinite ? $0 : nil }
        self.unit = unit
    }

    var formatted: String {
        guard let value else { return "-" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return String(format: abs(value) >= 100 ? "%.0f" : abs(value) >= 10 ? "%.1f" : "%.3g", value)
    }
}

/// A parameter value as people write it: 25, not 25.0.
func describe(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
}

/// A scenario's outcome: its parameters, one row of figures, and notes worth reading.
struct BenchResult: Encodable {
    var scenario: String
    var parameters: [String: String]
    var figures: [Figure]
    var notes: [String] = []
    var machine = Machine()

    struct Machine: Encodable {
        var cpu = Host.cpuModel
        var cores = Host.coreCount
        var date = ISO8601DateFormatter().string(from: Date())
    }

    /// The table: a header naming each figure with its unit, then the row.
    func printTable() {
        let headers = ["scenario"] + figures.map { $0.unit.isEmpty ? $0.name : "\($0.name) (\($0.unit))" }
        let cells = [scenario] + figures.map(\.formatted)
        let widths = zip(headers, cells).map { max($0.count, $1.count) }
        func line(_ columns: [String]) -> String {
            zip(columns, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: " | ")
        }
        print(parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        print(line(headers))
        print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "-|-"))
        print(line(cells))
        for note in notes { print("note: \(note)") }
    }

    func writeJSON(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
    }
}
