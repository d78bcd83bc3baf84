import NIOCore
import SidecastJSON
import XCTest

final class JSONValuePrintingTests: XCTestCase {
    func testScalars() {
        XCTAssertEqual(JSONValue.null.jsonString(), "null")
        XCTAssertEqual(JSONValue.bool(true).jsonString(), "true")
        XCTAssertEqual(JSONValue.bool(false).jsonString(), "false")
        XCTAssertEqual(JSONValue.int(-12).jsonString(), "-12")
        XCTAssertEqual(JSONValue.int(.min).jsonString(), "-9223372036854775808")
        XCTAssertEqual(JSONValue.string("hi").jsonString(), #""hi""#)
    }

    func testContainersAreCompactAndKeepOrder() {
        let value: JSONValue = ["z": [1, "two", nil, [:]], "a": ["nested": []], "m": true]
        XCTAssertEqual(value.jsonString(), #"{"z":[1,"two",null,{}],"a":{"nested":[]},"m":true}"#)
    }

    func testDoublesPrintAsJavaScriptDoes() {
        let cases: [(Double, String)] = [
            (1, "1"), (-1, "-1"), (0, "0"), (-0.0, "0"), (0.1, "0.1"), (1.5, "1.5"), (-2.25, "-2.25"),
            (123.456, "123.456"), (1e16, "10000000000000000"), (1e20, "100000000000000000000"),
            (1e21, "1e+21"), (1.5e21, "1.5e+21"), (0.000001, "0.000001"), (0.0000001, "1e-7"),
            (1.25e-7, "1.25e-7"), (0.001234, "0.001234"), (1_152_921_504_606_846_976, "1152921504606847000"),
            (9_007_199_254_740_991, "9007199254740991"), (.leastNonzeroMagnitude, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"), (1 / 3, "0.3333333333333333"),
            (.nan, "null"), (.infinity, "null"), (-.infinity, "null"),
        ]
        for (value, expected) in cases {
            XCTAssertEqual(JSONValue.double(value).jsonString(), expected, "\(value)")
        }
    }

    func testDoublesRoundTripTheirValue() throws {
        for value in [0.1, 1.0 / 3, 2.5e-300, 1e300, 123_456.789, -9.87654321e-5, 1e20, 2e22] {
            let parsed = try JSONValue(parsing: JSONValue.double(value).jsonString())
            switch parsed {
            case .double(let d): XCTAssertEqual(d, value)
            case .int(let i): XCTAssertEqual(Double(i), value)
            default: XCTFail("\(parsed)")
            }
        }
    }

    func testStringEscapes() {
        XCTAssertEqual(JSONValue.string("a\"b\\c/d").jsonString(), #""a\"b\\c/d""#)
        XCTAssertEqual(JSONValue.string("\u{8}\u{C}\n\r\t").jsonString(), #""\b\f\n\r\t""#)
        XCTAssertEqual(JSONValue.string("\u{0}\u{1}\u{1F}\u{7F}").jsonString(), "\"\\u0000\\u0001\\u001f\u{7F}\"")
        XCTAssertEqual(JSONValue.string("héllo 😀 \u{2028}").jsonString(), "\"héllo 😀 \u{2028}\"")
        XCTAssertEqual(JSONValue.object(["k\"\n": 1]).jsonString(), #"{"k\"\n":1}"#)
    }

    func testOutputNeverContainsARawNewline() {
        let value: JSONValue = ["line\nbreak": ["a\r\nb", .double(1e-9), .binary(ByteBuffer(bytes: Array(0..<200)))]]
        XCTAssertFalse(value.jsonString().contains { $0.isNewline })
    }

    func testBinaryPrintsAsBase64Object() {
        let value: JSONValue = ["data": .binary(ByteBuffer(bytes: [1, 2, 3, 4])), "empty": .binary(ByteBuffer())]
        XCTAssertEqual(value.jsonString(), #"{"data":{"$binary":"AQIDBA=="},"empty":{"$binary":""}}"#)
    }

    func testWriteAppendsTheSameBytesAsJSONString() {
        let value: JSONValue = ["a": [1, 2.5, "x\u{0}", nil, true], "b": .binary(ByteBuffer(bytes: [9, 8]))]
        var buffer = ByteBuffer(string: "4")
        value.write(to: &buffer)
        XCTAssertEqual(String(buffer: buffer), "4" + value.jsonString())
    }

    func testCustomBinaryWriterSeesBinariesInOutputOrder() {
        let value: JSONValue = [.binary(ByteBuffer(bytes: [1])), ["k": .binary(ByteBuffer(bytes: [2])), "j": [.binary(ByteBuffer(bytes: [3]))]]]
        var seen: [ByteBuffer] = []
        var buffer = ByteBuffer()
        value.write(to: &buffer) { bytes, buffer in
            buffer.writeString("#\(seen.count)")
            seen.append(bytes)
        }
        XCTAssertEqual(String(buffer: buffer), #"[#0,{"k":#1,"j":[#2]}]"#)
        XCTAssertEqual(seen, [ByteBuffer(bytes: [1]), ByteBuffer(bytes: [2]), ByteBuffer(bytes: [3])])
    }

    func testRoundTrips() throws {
        let values: [JSONValue] = [
            nil, true, 0, -5, .int(.max), .int(.min), 2.5, "", "a\u{0}b", "😀\"\\\n",
            [], [:], [1, [2, [3, ["deep": [nil]]]]],
            ["z": 1, "a": ["b": "c"], "\u{1}": false, "é": [1.25, -3]],
        ]
        for value in values {
            XCTAssertEqual(try JSONValue(parsing: value.jsonString()), value, value.jsonString())
        }
        let binary: JSONValue = ["file": .binary(ByteBuffer(bytes: Array(0...255))), "list": [.binary(ByteBuffer(bytes: [7]))]]
        XCTAssertEqual(try JSONValue(parsing: binary.jsonString(), binaryObjects: .decode), binary)
    }
}
