/// Why a JSON text could not be turned into a `JSONValue`, with jansson's location of the problem.
///
/// `line`, `column` and `position` follow jansson's `json_error_t`: lines and columns count from
/// 1, `position` is the byte offset from the start of the text, and all three are -1 when the
/// error has no location (for example a `$binary` object whose base64 is malformed).
public struct JSONError: Error, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var position: Int
    public var text: String

    public init(line: Int = -1, column: Int = -1, position: Int = -1, text: String) {
        self.line = line
        self.column = column
        self.position = position
        self.text = text
    }

    public var description: String {
        guard line >= 0 else { return "invalid JSON: \(text)" }
        return "invalid JSON: \(text) (line \(line), column \(column), position \(position))"
    }
}
