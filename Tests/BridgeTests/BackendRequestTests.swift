import NIOCore
import SidecastJSON
import XCTest

@testable import Bridge

final class BackendRequestTests: XCTestCase {
    private func decode(_ line: String) throws(BackendLineError) -> BackendRequest {
        try BackendRequest(line: ByteBuffer(string: line))
    }

    private func failure(_ line: String) -> BackendLineError? {
        do {
            _ = try decode(line)
            return nil
        } catch {
            return error
        }
    }

    func testHelloWithDefaults() throws {
        let request = try decode(#"{"type":"hello","version":1,"nsps":["/","/admin"]}"#)
        XCTAssertEqual(request.command, .hello(.init(version: 1, namespaces: ["/", "/admin"], group: "default", authorize: false)))
        XCTAssertNil(request.id)
    }

    func testEmitWithEveryField() throws {
        let request = try decode(
            #"{"type":"emit","id":"e1","nsp":"/","event":"m","args":[1,{"$binary":"AAE="}],"to":["r"],"except":["x"],"volatile":true,"local":true,"ack":{"timeout":500}}"#
        )
        XCTAssertEqual(request.id, "e1")
        guard case .emit(let emit) = request.command else { return XCTFail("not an emit: \(request.command)") }
        XCTAssertEqual(emit.event, "m")
        XCTAssertEqual(emit.args, [1, .binary(ByteBuffer(bytes: [0, 1]))])
        XCTAssertEqual(emit.to, ["r"])
        XCTAssertEqual(emit.except, ["x"])
        XCTAssertTrue(emit.volatile)
        XCTAssertTrue(emit.local)
        XCTAssertEqual(emit.ackTimeout, 500)
    }

    func testEmitToEveryoneByDefault() throws {
        guard case .emit(let emit) = try decode(#"{"type":"emit","nsp":"/","event":"m"}"#).command else {
            return XCTFail("not an emit")
        }
        XCTAssertEqual(emit.to, [])
        XCTAssertEqual(emit.args, [])
        XCTAssertNil(emit.ackTimeout)
    }

    func testEmitWithoutBinaryKeepsItsArgumentsPrinted() throws {
        let request = try decode(#"{"type":"emit","nsp":"/","event":"m","args":[1.0,{"a":[2.5,"x"]}],"to":["r"]}"#)
        guard case .emit(let emit) = request.command else { return XCTFail("not an emit: \(request.command)") }
        guard case .printed(let data) = emit.arguments else { return XCTFail("arguments not printed: \(emit.arguments)") }
        XCTAssertEqual(String(buffer: data.bytes), #"["m",1,{"a":[2.5,"x"]}]"#)
        XCTAssertEqual(emit.args, [1, ["a": [2.5, "x"]]])
        XCTAssertEqual(emit.to, ["r"])
        XCTAssertEqual(
            request.command,
            .emit(.init(namespace: "/", event: "m", arguments: .values([1, ["a": [2.5, "x"]]]), to: ["r"], except: [], volatile: false, local: false, ackTimeout: nil))
        )
    }

    func testEmitWithBinaryKeepsItsArgumentsAsValues() throws {
        guard case .emit(let emit) = try decode(#"{"type":"emit","nsp":"/","event":"m","args":[{"$binary":"AQ=="}]}"#).command else {
            return XCTFail("not an emit")
        }
        guard case .values(let args) = emit.arguments else { return XCTFail("arguments printed: \(emit.arguments)") }
        XCTAssertEqual(args, [.binary(ByteBuffer(bytes: [1]))])
    }

    func testEmitArgumentsMustBeAnArray() {
        for line in [#"{"type":"emit","nsp":"/","event":"m","args":{"a":1}}"#, #"{"type":"emit","nsp":"/","event":"m","args":{"$binary":"AQ=="}}"#] {
            let error = failure(line)
            XCTAssertEqual(error?.error.code, "bad_message", line)
            XCTAssertEqual(error?.line, "emit", line)
        }
        XCTAssertEqual(failure(#"{"type":"emit","nsp":"x","event":"m","args":5}"#)?.error.message, #"namespace "x" must start with "/""#)
    }

    func testSelectors() throws {
        XCTAssertEqual(
            try decode(#"{"type":"join","sid":"s1","nsp":"/","rooms":["a"]}"#).command,
            .join(.socket("s1"), namespace: "/", rooms: ["a"])
        )
        XCTAssertEqual(
            try decode(#"{"type":"leave","in":["a"],"except":["b"],"nsp":"/","rooms":["c"]}"#).command,
            .leave(.rooms(in: ["a"], except: ["b"], local: false), namespace: "/", rooms: ["c"])
        )
        XCTAssertEqual(
            try decode(#"{"type":"disconnect","sid":"s1","nsp":"/","close":true}"#).command,
            .disconnect(.socket("s1"), namespace: "/", close: true)
        )
        XCTAssertEqual(failure(#"{"type":"join","nsp":"/","rooms":["a"]}"#)?.error.code, "bad_message")
        XCTAssertEqual(failure(#"{"type":"join","sid":"s","in":[],"nsp":"/","rooms":["a"]}"#)?.error.code, "bad_message")
    }

    func testQueriesAndAuthorizationAnswers() throws {
        XCTAssertEqual(
            try decode(#"{"type":"count","id":2,"nsp":"/","in":["lobby"]}"#).command,
            .count(namespace: "/", in: ["lobby"], except: [], local: false)
        )
        XCTAssertEqual(try decode(#"{"type":"accept","req":3}"#).command, .accept(req: 3, data: .null))
        XCTAssertEqual(
            try decode(#"{"type":"reject","req":4,"message":"no","data":{"a":1}}"#).command,
            .reject(req: 4, message: "no", data: ["a": 1])
        )
    }

    func testErrorsCarryCodeIdAndLine() {
        let notJSON = failure("not json at all")
        XCTAssertEqual(notJSON?.error.code, "bad_json")
        XCTAssertEqual(notJSON?.line, "not json at all")
        XCTAssertNil(notJSON?.id)

        XCTAssertEqual(failure("[1,2]")?.error.code, "bad_json")

        let unknown = failure(#"{"type":"shout","id":9}"#)
        XCTAssertEqual(unknown?.error.code, "unknown_type")
        XCTAssertEqual(unknown?.id, 9)
        XCTAssertEqual(unknown?.line, "shout")

        XCTAssertEqual(failure(#"{"id":1}"#)?.error.code, "unknown_type")

        let missing = failure(#"{"type":"ack","id":"a","nsp":"/","ack":1,"args":[]}"#)
        XCTAssertEqual(missing?.error.code, "missing_field")
        XCTAssertEqual(missing?.id, "a")

        XCTAssertEqual(failure(#"{"type":"ack","sid":"s","nsp":"/","ack":"zero","args":[]}"#)?.error.code, "bad_message")
        XCTAssertEqual(failure(#"{"type":"emit","nsp":"nope","event":"m"}"#)?.error.code, "bad_message")
        XCTAssertEqual(failure(#"{"type":"emit","nsp":"/","event":"connect"}"#)?.error.code, "bad_message")
        XCTAssertEqual(failure(#"{"type":"emit","nsp":"/","event":"m","ack":{"timeout":5}}"#)?.error.code, "missing_field")
        XCTAssertEqual(failure(#"{"type":"emit","nsp":"/","event":"m","to":"room"}"#)?.error.code, "bad_message")
        let badBase64 = failure(#"{"type":"emit","id":5,"nsp":"/","event":"m","args":[{"$binary":"!!"}]}"#)
        XCTAssertEqual(badBase64?.error.code, "bad_message")
        XCTAssertEqual(badBase64?.id, 5)
        XCTAssertEqual(badBase64?.line, "emit")
        XCTAssertEqual(failure(#"{"type":"hello","version":1,"nsps":[]}"#)?.error.code, "bad_message")
    }
}
