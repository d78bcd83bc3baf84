import SidecastJSON
import XCTest

final class JSONArrayTextTests: XCTestCase {
    private func spans(_ text: String) -> (first: String, rest: String)? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            JSONArrayText(array: raw).map {
                (String(decoding: bytes[$0.first], as: UTF8.self), String(decoding: bytes[$0.rest], as: UTF8.self))
            }
        }
    }

    func testFirstStringAndTheRestAsWritten() {
        XCTAssertEqual(spans(#"["chat",{"t":1,"p":"x"}]"#)?.first, #""chat""#)
        XCTAssertEqual(spans(#"["chat",{"t":1,"p":"x"}]"#)?.rest, #"{"t":1,"p":"x"}"#)
        XCTAssertEqual(spans(#"["m",1.0,-0.0,"a,b",[2,3]]"#)?.rest, #"1.0,-0.0,"a,b",[2,3]"#)
        XCTAssertEqual(spans(#" [ "a" , 1 ] "#)?.first, #""a""#)
        XCTAssertEqual(spans(#" [ "a" , 1 ] "#)?.rest, " 1 ")
        XCTAssertEqual(spans("[\t\"a\"\t,\t2\t]")?.rest, "\t2\t")
    }

    func testOnlyAName() {
        XCTAssertEqual(spans(#"["no args"]"#)?.first, #""no args""#)
        XCTAssertEqual(spans(#"["no args"]"#)?.rest, "")
        XCTAssertEqual(spans(#"[ "x" ]"#)?.rest, "")
    }

    func testNamesWithEscapesAndOtherScripts() {
        XCTAssertEqual(spans(#"["a\"],b",1]"#)?.first, #""a\"],b""#)
        XCTAssertEqual(spans(#"["a\"],b",1]"#)?.rest, "1")
        XCTAssertEqual(spans(#"["é😀\u0000\n",[]]"#)?.first, #""é😀\u0000\n""#)
        XCTAssertEqual(spans(#"["\\",{}]"#)?.first, #""\\""#)
    }

    func testNoSpansWhenTheFirstElementIsNotAString() {
        XCTAssertNil(spans("[7,\"a\"]"))
        XCTAssertNil(spans("[null]"))
        XCTAssertNil(spans("[[\"a\"],1]"))
        XCTAssertNil(spans("{\"a\":1}"))
        XCTAssertNil(spans(""))
    }

    /// JSON allows line breaks between tokens; an NDJSON line must not hold one.
    func testNoSpansWhenTheElementsHoldALineBreak() {
        XCTAssertNil(spans("[\"a\",\n1]"))
        XCTAssertNil(spans("[\"a\",1\r]"))
        // Outside the spans, a line break does no harm.
        XCTAssertEqual(spans("[\n\"a\",1]")?.first, "\"a\"")
        XCTAssertEqual(spans("[\"a\",1]\n")?.rest, "1")
    }
}
