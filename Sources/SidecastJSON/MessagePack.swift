internal import CMsgpack
import NIOCore
import OrderedCollections

/// MessagePack as notepack.io 3.x writes and reads it, the codec of the Node Redis adapter and of
/// socket.io-msgpack-parser.
///
/// Packing and unpacking are msgpack-c's; this type only maps between its object tree and
/// `JSONValue`. The mapping follows notepack, so a Node server decodes what we encode to the
/// same JavaScript value it would have encoded itself, byte for byte where Node could produce it:
///
/// - Integers take the smallest msgpack int type (positive values an unsigned one), as notepack
///   chooses. A `.double` holding a whole number encodes as an integer too, because JavaScript
///   has one number type and notepack can't tell `3.0` from `3`; other doubles are float 64.
///   Whole doubles beyond the 64-bit range encode as float 64 (notepack itself would silently
///   wrap them).
/// - Strings are `str`, `.binary` is `bin` (a Node `Buffer` on the other side), `.null` is nil.
/// - Decoding: both float widths become `.double`; an unsigned value above `Int64.max`
///   becomes `.double`, as it does in JavaScript; `bin` becomes `.binary`.
/// - Map keys must be strings; integer keys become their decimal text, as JavaScript turns
///   every object key into a string. Other keys are an error.
/// - Of the extension types only the timestamp (-1, what notepack writes for a `Date`) is
///   understood; it becomes the ISO 8601 text `Date.prototype.toJSON` would print, which is what
///   a client would have received had the Node server emitted the `Date` itself. Any other
///   extension type is an error.
public enum MessagePack {
    /// Containers may nest this deep when decoding: msgpack-c's unpacker stack holds 32 levels.
    public static let maximumDepth = 32

    public static func encode(_ value: JSONValue) -> ByteBuffer {
        var buffer = ByteBuffer()
        encode(value, into: &buffer)
        return buffer
    }

    /// Appends the encoding of `value` to `buffer`.
    public static func encode(_ value: JSONValue, into buffer: inout ByteBuffer) {
        // Heap-allocated, because the packer keeps a pointer to the buffer between calls.
        let sbuffer = msgpack_sbuffer_new()!
        defer { msgpack_sbuffer_free(sbuffer) }
        let packer = msgpack_packer_new(sbuffer, msgpack_sbuffer_write)!
        defer { msgpack_packer_free(packer) }
        pack(value, with: packer)
        buffer.writeBytes(UnsafeRawBufferPointer(start: sbuffer.pointee.data, count: sbuffer.pointee.size))
    }

    /// Decodes exactly one value that fills all readable bytes of `bytes`.
    public static func decode(_ bytes: ByteBuffer) throws(MessagePackError) -> JSONValue {
        try withUnpacked(bytes) { (root) throws(MessagePackError) in try root.jsonValue() }
    }

    /// Unpacks `bytes` with msgpack-c and hands the root of the object tree to `body`.
    ///
    /// The tree lives in msgpack-c's zone and is freed when this returns, so `body` must copy out
    /// what it keeps and must not let the `MessagePackObject` escape. Reading the tree directly
    /// lets a caller look at a few fields (the sender's uid, the namespace) before paying for the
    /// conversion of a whole payload.
    public static func withUnpacked<Result>(
        _ bytes: ByteBuffer,
        _ body: (MessagePackObject) throws(MessagePackError) -> Result
    ) throws(MessagePackError) -> Result {
        var unpacked = msgpack_unpacked()
        msgpack_unpacked_init(&unpacked)
        defer { msgpack_unpacked_destroy(&unpacked) }
        let count = bytes.readableBytes
        var offset = 0
        let status = try bytes.withUnsafeReadableBytes { (raw) throws(MessagePackError) -> msgpack_unpack_return in
            guard let base = raw.baseAddress else { return MSGPACK_UNPACK_CONTINUE }
            try checkContainerSizes(raw)
            return msgpack_unpack_next(&unpacked, base.assumingMemoryBound(to: CChar.self), raw.count, &offset)
        }
        switch status {
        case MSGPACK_UNPACK_SUCCESS, MSGPACK_UNPACK_EXTRA_BYTES:
            break
        case MSGPACK_UNPACK_CONTINUE:
            throw .truncated
        case MSGPACK_UNPACK_NOMEM_ERROR:
            // The unpacker reports a full nesting stack as "no memory"; a real allocation
            // failure of its zone is far less likely for a Redis-sized message.
            throw .nestingTooDeep
        default:
            throw .malformed
        }
        guard offset == count else { throw .trailingBytes(count - offset) }
        return try body(MessagePackObject(unpacked.data))
    }

    /// Refuses, as truncated, a value whose containers announce more elements than bytes remain.
    ///
    /// msgpack-c allocates a container's elements as soon as it reads its header, so the five
    /// bytes `dd ffffffff` (an array of 2^32 - 1 elements) ask for 96 GiB before anything else is
    /// read (found by Fuzz/FuzzAdapter). Each element takes at least one byte, so such a value can
    /// only be truncated. This walk reads headers and lengths only, to find the containers, and
    /// checks that the values still owed fit in the bytes left, which keeps msgpack-c's
    /// allocations proportional to the input; decoding, and every other error, stay msgpack-c's.
    private static func checkContainerSizes(_ bytes: UnsafeRawBufferPointer) throws(MessagePackError) {
        /// The big-endian length of `width` bytes at `start`; nil past the end.
        func length(at start: Int, width: Int) -> Int? {
            guard start + width <= bytes.count else { return nil }
            return bytes[start..<start + width].reduce(0) { $0 << 8 | Int($1) }
        }
        var offset = 0
        var owed = 1  // values still to read
        while owed > 0, offset < bytes.count {
            let type = bytes[offset]
            owed -= 1
            var header = 1  // the type byte and any length that follows it
            var payload = 0  // bytes after the header that belong to this value alone
            var elements = 0  // values a container holds (a map: keys and values)
            switch type {
            case 0x80...0x8f: elements = Int(type & 0x0f) * 2
            case 0x90...0x9f: elements = Int(type & 0x0f)
            case 0xa0...0xbf: payload = Int(type & 0x1f)
            case 0xca, 0xce, 0xd2: payload = 4
            case 0xcb, 0xcf, 0xd3: payload = 8
            case 0xcc, 0xd0: payload = 1
            case 0xcd, 0xd1: payload = 2
            case 0xd4...0xd8: payload = 1 + (1 << Int(type - 0xd4))  // fixext: type byte and data
            case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xc7, 0xc8, 0xc9, 0xdc, 0xdd, 0xde, 0xdf:
                let width: Int = switch type {
                case 0xc4, 0xd9, 0xc7: 1
                case 0xc5, 0xda, 0xc8, 0xdc, 0xde: 2
                default: 4
                }
                guard let count = length(at: offset + 1, width: width) else { return }
                header += width
                switch type {
                case 0xdc, 0xdd: elements = count
                case 0xde, 0xdf: elements = count * 2
                case 0xc7, 0xc8, 0xc9: payload = 1 + count  // ext: type byte and data
                default: payload = count
                }
            default: break  // fixints, nil, booleans; 0xc1 is msgpack-c's to reject
            }
            offset += header
            owed += elements
            guard owed <= bytes.count - offset else { throw .truncated }
            offset += payload
        }
    }

    private static func pack(_ value: JSONValue, with packer: UnsafeMutablePointer<msgpack_packer>) {
        switch value {
        case .null:
            msgpack_pack_nil(packer)
        case .bool(let flag):
            if flag { msgpack_pack_true(packer) } else { msgpack_pack_false(packer) }
        case .int(let integer):
            msgpack_pack_int64(packer, integer)
        case .double(let number):
            packNumber(number, with: packer)
        case .string(var text):
            text.withUTF8 { utf8 in
                msgpack_pack_str(packer, utf8.count)
                msgpack_pack_str_body(packer, utf8.baseAddress, utf8.count)
            }
        case .binary(let bytes):
            bytes.withUnsafeReadableBytes { raw in
                msgpack_pack_bin(packer, raw.count)
                msgpack_pack_bin_body(packer, raw.baseAddress, raw.count)
            }
        case .array(let elements):
            msgpack_pack_array(packer, elements.count)
            for element in elements { pack(element, with: packer) }
        case .object(let members):
            msgpack_pack_map(packer, members.count)
            for (key, member) in members {
                pack(.string(key), with: packer)
                pack(member, with: packer)
            }
        }
    }

    private static func packNumber(_ number: Double, with packer: UnsafeMutablePointer<msgpack_packer>) {
        let twoTo64 = 18_446_744_073_709_551_616.0
        guard number.isFinite, number.rounded(.down) == number else {
            msgpack_pack_double(packer, number)
            return
        }
        if number >= 0, number < twoTo64 {
            msgpack_pack_uint64(packer, UInt64(number))
        } else if number < 0, number >= -9_223_372_036_854_775_808.0 {
            msgpack_pack_int64(packer, Int64(number))
        } else {
            msgpack_pack_double(packer, number)
        }
    }
}

/// A value in msgpack-c's object tree, valid only inside `MessagePack.withUnpacked`: its
/// strings and containers point into the unpacker's zone.
public struct MessagePackObject {
    fileprivate let object: msgpack_object

    fileprivate init(_ object: msgpack_object) {
        self.object = object
    }

    /// The number of elements when this is an array, else nil.
    public var arrayCount: Int? {
        self.object.type == MSGPACK_OBJECT_ARRAY ? Int(self.object.via.array.size) : nil
    }

    /// Element `index` of an array; `index` must be below `arrayCount`.
    public subscript(index: Int) -> MessagePackObject {
        precondition(index >= 0 && index < self.arrayCount ?? 0, "msgpack array index out of range")
        return MessagePackObject(self.object.via.array.ptr[index])
    }

    public var isMap: Bool { self.object.type == MSGPACK_OBJECT_MAP }

    /// The text when this is a `str`, else nil.
    public var stringValue: String? {
        self.object.type == MSGPACK_OBJECT_STR ? String(msgpackString: self.object) : nil
    }

    /// The value of the first member whose key is the string `key`, when this is a map.
    public func member(_ key: String) -> MessagePackObject? {
        guard self.isMap else { return nil }
        let map = self.object.via.map
        for index in 0..<Int(map.size) {
            let pair = map.ptr[index]
            if pair.key.type == MSGPACK_OBJECT_STR, String(msgpackString: pair.key) == key {
                return MessagePackObject(pair.val)
            }
        }
        return nil
    }

    /// Converts this value, copying it out of the zone; `depth` is how deep it is nested already.
    public func jsonValue(depth: Int = 0) throws(MessagePackError) -> JSONValue {
        try JSONValue(self.object, depth: depth)
    }
}

/// Why bytes could not be decoded as one MessagePack value.
public enum MessagePackError: Error, Hashable, CustomStringConvertible {
    /// The bytes end in the middle of a value (or there are none).
    case truncated
    /// A byte that starts no MessagePack value (0xc1).
    case malformed
    /// Containers nest deeper than `MessagePack.maximumDepth`.
    case nestingTooDeep
    /// A complete value is followed by this many more bytes (notepack rejects them too).
    case trailingBytes(Int)
    /// An extension type other than the timestamp, or a timestamp of an invalid size.
    case unsupportedExtension(type: Int8, size: Int)
    /// A map key that is neither a string nor an integer.
    case unsupportedMapKey

    public var description: String {
        switch self {
        case .truncated: return "msgpack: truncated value"
        case .malformed: return "msgpack: malformed value"
        case .nestingTooDeep: return "msgpack: nested deeper than \(MessagePack.maximumDepth) levels"
        case .trailingBytes(let count): return "msgpack: \(count) trailing bytes"
        case .unsupportedExtension(let type, let size): return "msgpack: unsupported extension type \(type) of \(size) bytes"
        case .unsupportedMapKey: return "msgpack: map key is neither a string nor an integer"
        }
    }
}

extension JSONValue {
    /// Converts a msgpack-c object (copying everything out of its zone).
    fileprivate init(_ object: msgpack_object, depth: Int) throws(MessagePackError) {
        switch object.type {
        case MSGPACK_OBJECT_NIL:
            self = .null
        case MSGPACK_OBJECT_BOOLEAN:
            self = .bool(object.via.boolean)
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            let value = object.via.u64
            self = value <= UInt64(Int64.max) ? .int(Int64(value)) : .double(Double(value))
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            self = .int(object.via.i64)
        case MSGPACK_OBJECT_FLOAT32, MSGPACK_OBJECT_FLOAT64:
            self = .double(object.via.f64)
        case MSGPACK_OBJECT_STR:
            self = .string(String(msgpackString: object))
        case MSGPACK_OBJECT_BIN:
            let bin = object.via.bin
            self = .binary(ByteBuffer(bytes: UnsafeRawBufferPointer(start: bin.ptr, count: Int(bin.size))))
        case MSGPACK_OBJECT_ARRAY:
            guard depth < MessagePack.maximumDepth else { throw .nestingTooDeep }
            let array = object.via.array
            var elements: [JSONValue] = []
            elements.reserveCapacity(Int(array.size))
            for index in 0..<Int(array.size) {
                elements.append(try JSONValue(array.ptr[index], depth: depth + 1))
            }
            self = .array(elements)
        case MSGPACK_OBJECT_MAP:
            guard depth < MessagePack.maximumDepth else { throw .nestingTooDeep }
            let map = object.via.map
            var members = OrderedDictionary<String, JSONValue>(minimumCapacity: Int(map.size))
            for index in 0..<Int(map.size) {
                let pair = map.ptr[index]
                // A repeated key keeps its first position and its last value, as in JavaScript.
                members[try String(msgpackKey: pair.key)] = try JSONValue(pair.val, depth: depth + 1)
            }
            self = .object(members)
        case MSGPACK_OBJECT_EXT:
            self = try JSONValue(extension: object)
        default:
            throw .malformed
        }
    }

    private init(extension object: msgpack_object) throws(MessagePackError) {
        var timestamp = msgpack_timestamp()
        var copy = object
        guard msgpack_object_to_timestamp(&copy, &timestamp) else {
            throw .unsupportedExtension(type: object.via.ext.type, size: Int(object.via.ext.size))
        }
        // notepack builds `new Date(seconds * 1000 + nanoseconds / 1e6)`; the Date keeps whole
        // milliseconds (truncated toward zero) and one outside its range is invalid, which
        // `toJSON` prints as null.
        let milliseconds = (Double(timestamp.tv_sec) * 1000 + Double(timestamp.tv_nsec) / 1_000_000).rounded(.towardZero)
        guard milliseconds.magnitude <= 8.64e15 else {
            self = .null
            return
        }
        self = .string(ISO8601Milliseconds.format(Int64(milliseconds)))
    }
}

extension String {
    fileprivate init(msgpackString object: msgpack_object) {
        let str = object.via.str
        let bytes = UnsafeRawBufferPointer(start: str.ptr, count: Int(str.size))
        // Invalid UTF-8 becomes U+FFFD, as Node's `buffer.toString("utf8")` does in notepack.
        self.init(decoding: bytes, as: UTF8.self)
    }

    fileprivate init(msgpackKey object: msgpack_object) throws(MessagePackError) {
        switch object.type {
        case MSGPACK_OBJECT_STR: self.init(msgpackString: object)
        case MSGPACK_OBJECT_POSITIVE_INTEGER: self = String(object.via.u64)
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: self = String(object.via.i64)
        default: throw .unsupportedMapKey
        }
    }
}

/// `Date.prototype.toISOString` for a time value in milliseconds since 1970.
enum ISO8601Milliseconds {
    static func format(_ milliseconds: Int64) -> String {
        let msPerDay: Int64 = 86_400_000
        var days = milliseconds / msPerDay
        var msOfDay = milliseconds % msPerDay
        if msOfDay < 0 {
            msOfDay += msPerDay
            days -= 1
        }
        let (year, month, day) = civilDate(fromDays: days)
        let yearText: String
        if (0...9999).contains(year) {
            yearText = padded(year, 4)
        } else {
            yearText = (year < 0 ? "-" : "+") + padded(abs(year), 6)
        }
        let hour = msOfDay / 3_600_000
        let minute = msOfDay / 60_000 % 60
        let second = msOfDay / 1000 % 60
        let millisecond = msOfDay % 1000
        return "\(yearText)-\(padded(month, 2))-\(padded(day, 2))T\(padded(hour, 2)):\(padded(minute, 2)):\(padded(second, 2)).\(padded(millisecond, 3))Z"
    }

    /// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day count since 1970-01-01.
    private static func civilDate(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
