internal import CJansson
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON object parsed member by member with jansson, remembering where in the text each
/// array member's value is.
///
/// A backend's emit line carries the arguments that every client gets. Knowing where they are
/// in the line lets the bridge copy them into the packet, instead of printing them again from
/// the parsed tree, which costs jansson about as much as parsing did.
///
/// jansson reads every key and value that is not a plain string (a quoted run of printable
/// ASCII without `"` or `\`, valid JSON as it stands), and reports the bytes it read; between
/// them there is only whitespace, one colon or one comma, which this type checks. Whatever it
/// does not take this way (malformed text, an integer too large for `Int64`, a NUL in a key, a
/// member nested as deep as jansson allows, anything but an object), it declines with `nil`,
/// and the caller parses the text whole, so errors and edge cases stay jansson's own. The tree it builds is the one `json_loadb` builds
/// for the same text, a repeated key keeping its last value.
struct JSONObjectText {
    /// The object, with one reference the caller owns.
    let object: UnsafeMutablePointer<json_t>
    /// The text of each member whose value is an array, by value (the last one for a repeated key).
    let arraySpans: [(value: UnsafeMutablePointer<json_t>, span: Range<Int>)]

    init?(object bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return nil }
        var cursor = Self.skippingWhitespace(bytes, from: 0)
        guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: "{") else { return nil }
        guard let object = json_object() else { return nil }
        var spans: [(value: UnsafeMutablePointer<json_t>, span: Range<Int>)] = []
        var complete = false
        defer { if !complete { json_decref(object) } }

        cursor = Self.skippingWhitespace(bytes, from: cursor + 1)
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "}") {
            cursor += 1
        } else {
            while true {
                guard let key = Self.key(bytes, base: base, at: cursor) else { return nil }
                cursor = Self.skippingWhitespace(bytes, from: key.end)
                guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":") else {
                    key.release()
                    return nil
                }
                cursor = Self.skippingWhitespace(bytes, from: cursor + 1)
                guard let value = Self.value(bytes, base: base, at: cursor) else {
                    key.release()
                    return nil
                }
                let size = json_object_size(object)
                let stored = key.withBytes { json_object_setn_new_nocheck(object, $0, $1, value.json) }
                key.release()
                guard stored == 0 else { return nil }
                if json_object_size(object) == size {
                    // A repeated key: its earlier value is gone, and so must be its span, before
                    // a later value can be allocated where it was.
                    spans.removeAll { !Self.holds(object, $0.value) }
                }
                if value.json.pointee.type == JSON_ARRAY {
                    spans.append((value.json, cursor..<value.end))
                }
                cursor = Self.skippingWhitespace(bytes, from: value.end)
                guard cursor < bytes.count else { return nil }
                if bytes[cursor] == UInt8(ascii: "}") {
                    cursor += 1
                    break
                }
                guard bytes[cursor] == UInt8(ascii: ",") else { return nil }
                cursor = Self.skippingWhitespace(bytes, from: cursor + 1)
            }
        }
        guard Self.skippingWhitespace(bytes, from: cursor) == bytes.count else { return nil }
        complete = true
        self.object = object
        self.arraySpans = spans
    }

    private static func holds(_ object: UnsafeMutablePointer<json_t>, _ value: UnsafeMutablePointer<json_t>) -> Bool {
        var iterator = json_object_iter(object)
        while let current = iterator {
            if json_object_iter_value(current) == value { return true }
            iterator = json_object_iter_next(object, current)
        }
        return false
    }

    /// A key: a plain string's bytes in the text, or the string jansson read.
    private enum Key {
        case plain(UnsafePointer<CChar>, Int, end: Int)
        case parsed(UnsafeMutablePointer<json_t>, end: Int)

        var end: Int {
            switch self {
            case .plain(_, _, let end), .parsed(_, let end): end
            }
        }

        func withBytes<T>(_ body: (UnsafePointer<CChar>, Int) -> T) -> T {
            switch self {
            case .plain(let start, let count, _): body(start, count)
            case .parsed(let json, _): body(json_string_value(json), json_string_length(json))
            }
        }

        func release() {
            if case .parsed(let json, _) = self { json_decref(json) }
        }
    }

    private static func key(_ bytes: UnsafeRawBufferPointer, base: UnsafeRawPointer, at start: Int) -> Key? {
        guard start < bytes.count, bytes[start] == UInt8(ascii: "\"") else { return nil }
        if let end = plainStringEnd(bytes, at: start) {
            return .plain(base.advanced(by: start + 1).assumingMemoryBound(to: CChar.self), end - start - 2, end: end)
        }
        guard let parsed = load(bytes, base: base, at: start) else { return nil }
        // jansson keeps keys as C strings and refuses a NUL in one; so does the whole parse.
        guard parsed.json.pointee.type == JSON_STRING,
              memchr(json_string_value(parsed.json), 0, json_string_length(parsed.json)) == nil
        else {
            json_decref(parsed.json)
            return nil
        }
        return .parsed(parsed.json, end: parsed.end)
    }

    private static func value(_ bytes: UnsafeRawBufferPointer, base: UnsafeRawPointer, at start: Int) -> (json: UnsafeMutablePointer<json_t>, end: Int)? {
        if let end = plainStringEnd(bytes, at: start) {
            guard let json = json_stringn_nocheck(base.advanced(by: start + 1).assumingMemoryBound(to: CChar.self), end - start - 2) else {
                return nil
            }
            return (json, end)
        }
        return load(bytes, base: base, at: start)
    }

    /// jansson reads the one value at `start` and reports the bytes it read. A token ends where
    /// its last character is: jansson puts back the character after a number or a literal.
    private static func load(_ bytes: UnsafeRawBufferPointer, base: UnsafeRawPointer, at start: Int) -> (json: UnsafeMutablePointer<json_t>, end: Int)? {
        guard start < bytes.count else { return nil }
        var error = json_error_t()
        let flags = Int(JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL)
        guard let json = json_loadb(base.advanced(by: start).assumingMemoryBound(to: CChar.self), bytes.count - start, flags, &error) else {
            return nil
        }
        let end = start + Int(error.position)
        // Inside the object a value sits one level deeper than read alone: at jansson's limit
        // it would fail the whole parse. Only a text of 2 × limit bytes can nest that deep.
        guard end > start, end <= bytes.count,
              end - start < 2 * maxDepth || depth(json, within: maxDepth) < maxDepth
        else {
            json_decref(json)
            return nil
        }
        return (json, end)
    }

    /// jansson's nesting limit (`JSON_PARSER_MAX_DEPTH`, which Swift does not import).
    private static let maxDepth = 2048

    /// How deeply `json` nests containers, counting itself, up to `limit`.
    private static func depth(_ json: UnsafeMutablePointer<json_t>, within limit: Int) -> Int {
        guard limit > 0 else { return 0 }
        var deepest = 0
        switch json.pointee.type {
        case JSON_ARRAY:
            for index in 0..<json_array_size(json) {
                deepest = max(deepest, depth(json_array_get(json, index)!, within: limit - 1))
                if deepest >= limit - 1 { break }
            }
        case JSON_OBJECT:
            var iterator = json_object_iter(json)
            while let current = iterator, deepest < limit - 1 {
                deepest = max(deepest, depth(json_object_iter_value(current)!, within: limit - 1))
                iterator = json_object_iter_next(json, current)
            }
        default:
            return 0
        }
        return deepest + 1
    }

    /// The end (after the closing quote) of the string at `start` when it holds only printable
    /// ASCII other than `"` and `\`.
    private static func plainStringEnd(_ bytes: UnsafeRawBufferPointer, at start: Int) -> Int? {
        guard start < bytes.count, bytes[start] == UInt8(ascii: "\"") else { return nil }
        var index = start + 1
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { return index + 1 }
            guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    private static func skippingWhitespace(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return index
            }
        }
        return index
    }
}
