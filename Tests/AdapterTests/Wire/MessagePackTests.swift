import Adapter
import NIOCore
import SidecastJSON
import XCTest

/// Expected bytes are assembled by hand from the msgpack spec and from what notepack.io 3.x
/// writes for the same JavaScript value (see its encode.js: smallest int type, positive values
/// unsigned, whole numbers as integers, other numbers float 64).
final class MessagePackTests: XCTestCase {
    private func assertEncodes(_ value: JSONValue, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertBytes(MessagePack.encode(value), hex(expected), file: file, line: line)
    }

    private func assertDecodes(_ bytes: String, _ expected: JSONValue, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(try MessagePack.decode(hex(bytes)), expected, file: file, line: line)
    }

    private func assertFails(_ bytes: ByteBuffer, _ expected: MessagePackError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try MessagePack.decode(bytes), file: file, line: line) { error in
            XCTAssertEqual(error as? MessagePackError, expected, file: file, line: line)
        }
    }

    func testNilAndBooleans() {
        assertEncodes(.null, "c0")  // nil
        assertEncodes(true, "c3")  // true
        assertEncodes(false, "c2")  // false
    }

    func testIntegersTakeTheSmallestType() {
        assertEncodes(0, "00")  // positive fixint
        assertEncodes(127, "7f")  // largest positive fixint
        assertEncodes(128, "cc 80")  // uint 8
        assertEncodes(255, "cc ff")
        assertEncodes(256, "cd 0100")  // uint 16, big-endian
        assertEncodes(65535, "cd ffff")
        assertEncodes(65536, "ce 00010000")  // uint 32
        assertEncodes(4_294_967_296, "cf 0000000100000000")  // uint 64 (2^32)
        assertEncodes(.int(.max), "cf 7fffffffffffffff")
        assertEncodes(-1, "ff")  // negative fixint 111xxxxx
        assertEncodes(-32, "e0")  // smallest negative fixint
        assertEncodes(-33, "d0 df")  // int 8, two's complement
        assertEncodes(-128, "d0 80")
        assertEncodes(-129, "d1 ff7f")  // int 16
        assertEncodes(-32769, "d2 ffff7fff")  // int 32
        assertEncodes(-2_147_483_649, "d3 ffffffff7fffffff")  // int 64
        assertEncodes(.int(.min), "d3 8000000000000000")
    }

    func testDoublesFollowJavaScriptNumbers() {
        assertEncodes(.double(3), "03")  // a whole number is an integer for notepack
        assertEncodes(.double(-0.0), "00")  // -0 >= 0 in JavaScript: fixint 0
        assertEncodes(.double(300), "cd 012c")  // uint 16 300
        assertEncodes(.double(-200), "d1 ff38")  // int 16 -200
        assertEncodes(.double(1e19), "cf 8ac7230489e80000")  // uint 64: 1e19 < 2^64
        assertEncodes(.double(1.5), "cb 3ff8000000000000")  // float 64, IEEE 754 big-endian
        assertEncodes(.double(0.1), "cb 3fb999999999999a")
        assertEncodes(.double(1e20), "cb 4415af1d78b58c40")  // whole but beyond 64 bits: float 64
        assertEncodes(.double(.infinity), "cb 7ff0000000000000")
    }

    func testStrings() {
        assertEncodes("", "a0")  // fixstr 0
        assertEncodes("é", "a2 c3a9")  // the length counts UTF-8 bytes
        assertEncodes(.string(String(repeating: "a", count: 31)), "bf" + String(repeating: "61", count: 31))  // largest fixstr
        assertEncodes(.string(String(repeating: "a", count: 32)), "d9 20" + String(repeating: "61", count: 32))  // str 8
        assertEncodes(.string(String(repeating: "a", count: 256)), "da 0100" + String(repeating: "61", count: 256))  // str 16
    }

    func testBinary() {
        assertEncodes(.binary(ByteBuffer()), "c4 00")  // bin 8, empty
        assertEncodes(.binary(ByteBuffer(bytes: [1, 2, 3])), "c4 03 010203")
        let large = ByteBuffer(repeating: 0xab, count: 256)
        assertEncodes(.binary(large), "c5 0100" + String(repeating: "ab", count: 256))  // bin 16
    }

    func testContainers() {
        assertEncodes([], "90")  // fixarray 0
        assertEncodes([1, "a"], "92 01 a161")
        assertEncodes(.array(Array(repeating: .null, count: 16)), "dc 0010" + String(repeating: "c0", count: 16))  // array 16
        assertEncodes([:], "80")  // fixmap 0
        // Members keep their order, as in a JavaScript object.
        assertEncodes(["b": 1, "a": [true]], "82 a162 01 a161 91c3")
        let sixteen = JSONValue.object(.init(uniqueKeysWithValues: (0..<16).map { (String(UnicodeScalar(UInt8(97 + $0))), JSONValue.null) }))
        var expected = "de 0010"  // map 16
        for index in 0..<16 { expected += "a1 " + String(97 + index, radix: 16) + " c0" }
        assertEncodes(sixteen, expected)
    }

    func testDecodesEveryNumberType() {
        assertDecodes("cc ff", 255)
        assertDecodes("cd ffff", 65535)
        assertDecodes("ce ffffffff", 4_294_967_295)
        assertDecodes("cf 7fffffffffffffff", .int(.max))
        assertDecodes("cf ffffffffffffffff", .double(Double(UInt64.max)))  // above Int64.max: 2^64 as a double
        assertDecodes("d0 80", -128)
        assertDecodes("d1 8000", -32768)
        assertDecodes("d2 80000000", -2_147_483_648)
        assertDecodes("d3 8000000000000000", .int(.min))
        assertDecodes("ca 3fc00000", .double(1.5))  // float 32
        assertDecodes("cb 3ff8000000000000", .double(1.5))  // float 64
    }

    func testDecodesStringsBinaryAndContainers() {
        assertDecodes("d9 03 616263", "abc")  // str 8 even where fixstr would do
        assertDecodes("a1 ff", "\u{FFFD}")  // invalid UTF-8 is replaced, as Node's toString does
        assertDecodes("c6 00000002 0102", .binary(ByteBuffer(bytes: [1, 2])))  // bin 32
        assertDecodes("dd 00000001 c0", [nil])  // array 32
        assertDecodes("df 00000001 a161 01", ["a": 1])  // map 32
        assertDecodes("82 a161 01 a161 02", ["a": 2])  // a repeated key keeps its last value
        assertDecodes("81 01 a161", ["1": "a"])  // an integer key becomes its text, as in JavaScript
        assertDecodes("81 ff a161", ["-1": "a"])
    }

    func testTimestampsBecomeDateJSON() {
        // notepack's own example: new Date("2000-06-13T00:00:00.000Z") => d6 ff 39457980
        // (fixext 4, type -1, uint32 seconds 960854400).
        assertDecodes("d6 ff 39457980", "2000-06-13T00:00:00.000Z")
        // fixext 8, type -1: nanoseconds 500000000 in the top 30 bits, seconds 0 in the low 34.
        assertDecodes("d7 ff 7735940000000000", "1970-01-01T00:00:00.500Z")
        // ext 8 of 12 bytes, type -1: uint32 nanoseconds 0, int64 seconds -1.
        assertDecodes("c7 0c ff 00000000 ffffffffffffffff", "1969-12-31T23:59:59.000Z")
        // int64 seconds 253402300800 = 10000-01-01: JavaScript switches to a six-digit year.
        assertDecodes("c7 0c ff 00000000 0000003afff44180", "+010000-01-01T00:00:00.000Z")
    }

    func testOtherExtensionsAreRejected() {
        assertFails(hex("d4 01 00"), .unsupportedExtension(type: 1, size: 1))  // fixext 1, type 1
        assertFails(hex("c7 03 05 010203"), .unsupportedExtension(type: 5, size: 3))  // ext 8, type 5
        assertFails(hex("d5 ff 0000"), .unsupportedExtension(type: -1, size: 2))  // no 2-byte timestamp
        assertFails(hex("91 d4 00 00"), .unsupportedExtension(type: 0, size: 1))  // nested
    }

    /// Found by Fuzz/FuzzAdapter: a header announcing billions of elements made msgpack-c allocate
    /// them all (here 57 GB for `dd 8d9a8e5e`) before reading any.
    func testContainersAnnouncingMoreElementsThanBytesAreTruncatedBeforeUnpacking() {
        assertFails(hex("dd ffffffff"), .truncated)  // array 32 of 2^32 - 1
        assertFails(hex("df ffffffff"), .truncated)  // map 32
        assertFails(hex("dc ffff 01"), .truncated)  // array 16
        assertFails(hex("de 0002 a161 01 a162"), .truncated)  // map 16 of 2 with 3 of its 4 values
        assertFails(hex("92 c4 02 0102 dd 7fffffff c0"), .truncated)  // after a bin, in an array
        assertFails(hex("84a9 07a6 7061 636b 6574 83a4 7479 7065 02a4 6461 7461 91a1 65a3 6e73 7086 dd8d 9a8e 5ed0 5b75 656f 7073 74"), .truncated)
        assertDecodes("dc 0002 c0 c0", [.null, .null])  // exactly as many elements as bytes
        assertFails(hex("92 c7 01 05 00 dd ffffffff"), .truncated)  // after an ext, in an array
        assertFails(hex("92 d6 05 00000000 dd ffffffff"), .truncated)  // after a fixext 4
        assertDecodes("93 a3 616263 cb 3ff8000000000000 dc 0000", ["abc", 1.5, []])
    }

    func testMalformedInput() {
        assertFails(ByteBuffer(), .truncated)
        assertFails(hex("92 01"), .truncated)  // array of 2 with one element
        assertFails(hex("a3 6162"), .truncated)  // fixstr 3 with two bytes
        assertFails(hex("cd 01"), .truncated)  // uint 16 with one byte
        assertFails(hex("01 02"), .trailingBytes(1))
        assertFails(hex("c0 c0 c0"), .trailingBytes(2))
        assertFails(hex("c1"), .malformed)  // the one unused type byte
        assertFails(hex("81 90 01"), .unsupportedMapKey)  // {[]: 1}
        assertFails(hex("81 c0 01"), .unsupportedMapKey)  // {nil: 1}
    }

    func testNestingLimit() {
        func nested(_ depth: Int) -> ByteBuffer {
            // `depth` fixarrays of one element around an integer.
            hex(String(repeating: "91", count: depth) + "01")
        }
        XCTAssertNoThrow(try MessagePack.decode(nested(MessagePack.maximumDepth)))
        assertFails(nested(MessagePack.maximumDepth + 1), .nestingTooDeep)
        assertFails(nested(1000), .nestingTooDeep)
    }

    func testRoundTrips() throws {
        let values: [JSONValue] = [
            .null, true, false, 0, 1, -1, 200, -200, 70000, -70000, .int(.max), .int(.min),
            .double(1.5), .double(-2.25), .double(1e300), "", "héllo ✓", .binary(ByteBuffer(bytes: [0, 255])),
            [], [1, [2, [3]]], [:],
            ["type": 2, "data": ["event", ["nested": [nil, true, .binary(ByteBuffer(bytes: [9]))]]], "nsp": "/chat"],
            .string(String(repeating: "x", count: 70000)),
            .array(Array(repeating: 1, count: 70000)),
        ]
        for value in values {
            XCTAssertEqual(try MessagePack.decode(MessagePack.encode(value)), value)
        }
    }

    func testEncodeAppendsToExistingBytes() {
        var buffer = ByteBuffer(bytes: [0xee])
        MessagePack.encode([1], into: &buffer)
        XCTAssertBytes(buffer, hex("ee 91 01"))
    }

    func testDecodeReadsOnlyTheReadableBytes() throws {
        var buffer = hex("ff ff a161")
        buffer.moveReaderIndex(forwardBy: 2)
        XCTAssertEqual(try MessagePack.decode(buffer), "a")
    }
}
