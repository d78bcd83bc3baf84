import Foundation
import Logging
import NIOCore
import NIOPosix
import XCTest

@testable import Redis

/// ``RedisStreamClient`` against a real redis-server: where the reader starts, the order of
/// appends, and how a lost connection or a restarted Redis is ridden out.
final class RedisStreamClientTests: RedisIntegrationTestCase {
    private var streamClients: [NIOLoopBound<RedisStreamClient>] = []

    override func tearDownWithError() throws {
        for client in self.streamClients {
            try? self.loop.flatSubmit { client.value.shutdown() }.wait()
        }
        self.streamClients = []
        try super.tearDownWithError()
    }

    /// A started client whose every entry read lands in the returned list, as "field=value".
    private func makeStreamClient(
        port: Int,
        minBackoff: TimeAmount = .milliseconds(10),
        writerField: String? = nil
    ) throws -> (NIOLoopBound<RedisStreamClient>, NIOLoopBound<Entries>) {
        let configuration = RedisClientConfiguration(
            url: try RedisURL("redis://127.0.0.1:\(port)"), minBackoff: minBackoff, maxBackoff: minBackoff * 2,
            connectTimeout: .seconds(2)
        )
        let loop = self.loop!
        let logger = self.logs.logger
        let (client, entries) = try loop.submit {
            let client = try RedisStreamClient(
                configuration: configuration, stream: RedisStreamConfiguration(name: "s", maxLength: 1000, readCount: 2, writerField: writerField),
                eventLoop: loop, logger: logger
            )
            let entries = NIOLoopBound(Entries(), eventLoop: loop)
            client.onEntry = { entry in
                entries.value.read += entry.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\(String(buffer: $0.value))" }
            }
            client.start()
            return (NIOLoopBound(client, eventLoop: loop), entries)
        }.wait()
        self.streamClients.append(client)
        return (client, entries)
    }

    final class Entries {
        var read: [String] = []
    }

    private func append(_ client: NIOLoopBound<RedisStreamClient>, _ values: String...) throws {
        try self.loop.submit {
            for value in values { client.value.append([("v", ByteBuffer(string: value))]) }
        }.wait()
    }

    private func append(_ client: NIOLoopBound<RedisStreamClient>, writer: String, _ values: String...) throws {
        try self.loop.submit {
            for value in values { client.value.append([("w", ByteBuffer(string: writer)), ("v", ByteBuffer(string: value))]) }
        }.wait()
    }

    private func read(_ entries: NIOLoopBound<Entries>) throws -> [String] {
        try self.loop.submit { entries.value.read }.wait()
    }

    private func connected(_ client: NIOLoopBound<RedisStreamClient>) throws -> Bool {
        try self.loop.submit { client.value.isConnected }.wait()
    }

    func testReadsWhatIsAppendedAfterItStartsInOrder() throws {
        let server = try self.makeServer()
        try server.cli("XADD", "s", "*", "v", "before")
        let (client, entries) = try self.makeStreamClient(port: server.port)
        // Appended before the links are up: they wait for the reader's start, then go in order.
        try self.append(client, "1", "2", "3", "4", "5")
        try eventually { try self.read(entries).count == 5 }
        XCTAssertEqual(try self.read(entries), ["v=1", "v=2", "v=3", "v=4", "v=5"], "read in batches of readCount, after the start")
        XCTAssertEqual(try server.cli("XLEN", "s"), "6")
        XCTAssertTrue(try self.connected(client))
        try server.cli("XADD", "s", "*", "v", "from-cli")
        try eventually { try self.read(entries).last == "v=from-cli" }
    }

    func testTheReaderResumesAfterTheLastIDItRead() throws {
        let server = try self.makeServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        // A backoff long enough that entries appended right after the restart precede the reconnect.
        let (client, entries) = try self.makeStreamClient(port: server.port, minBackoff: .milliseconds(800))
        try self.append(client, "1")
        try eventually { try self.read(entries) == ["v=1"] }

        server.kill()
        try eventually { try !self.connected(client) }
        try self.append(client, "a", "b")  // kept while Redis is away
        try server.start()
        // Redis kept the stream on disk: a reader starting over, or from "$", would differ.
        try server.cli("XADD", "s", "*", "v", "2")
        try server.cli("XADD", "s", "*", "v", "3")
        try eventually { try self.read(entries).count == 5 }
        XCTAssertEqual(try self.read(entries), ["v=1", "v=2", "v=3", "v=a", "v=b"], "nothing twice, nothing lost, in stream order")
        XCTAssertEqual(try server.cli("XLEN", "s"), "5")
    }

    func testAKeyOfAnotherTypeIsReportedAndLeftAlone() throws {
        let server = try self.makeServer()
        try server.cli("SET", "s", "not a stream")
        let (client, _) = try self.makeStreamClient(port: server.port)
        eventually { self.logs.lines.contains { "\($0.metadata["error"] ?? "")".contains("WRONGTYPE") } }
        XCTAssertFalse(try self.connected(client), "not usable while the key is no stream")
        XCTAssertEqual(try server.cli("GET", "s"), "not a stream")
        // Once the key is gone, the client comes up on its own.
        try server.cli("DEL", "s")
        try eventually { try self.connected(client) }
    }

    func testANumberedEntryAppendedAgainIsHandedOnOnce() throws {
        let server = try self.makeServer()
        let (writer, _) = try self.makeStreamClient(port: server.port, writerField: "w")
        let (reader, entries) = try self.makeStreamClient(port: server.port, writerField: "w")
        try eventually { try self.connected(writer) && self.connected(reader) }
        try self.append(writer, writer: "node-a", "1", "2")
        let first = self.fields("sidecast-seq=1 v=1 w=node-a", "sidecast-seq=2 v=2 w=node-a")
        try eventually { try self.read(entries).count == first.count }
        XCTAssertEqual(try self.read(entries), first, "numbered in the order appended, the number last")

        // What a retry appends after a reply was lost: the same fields again, then the next.
        let copyID = try server.cli("XADD", "s", "*", "w", "node-a", "v", "2", "sidecast-seq", "2")
        try self.append(writer, writer: "node-a", "3")
        // Another writer's numbers are its own; entries without a number pass as they come.
        try server.cli("XADD", "s", "*", "w", "node-b", "v", "b1", "sidecast-seq", "1")
        try server.cli("XADD", "s", "*", "w", "node", "v", "plain")
        try server.cli("XADD", "s", "*", "w", "node", "v", "plain")
        let all = first + self.fields("sidecast-seq=3 v=3 w=node-a", "sidecast-seq=1 v=b1 w=node-b", "v=plain w=node", "v=plain w=node")
        try eventually { try self.read(entries).count >= all.count }
        XCTAssertEqual(try self.read(entries), all, "the copy of entry 2 is dropped, nothing else")
        XCTAssertTrue(try self.loop.submit { reader.value.droppedAsDuplicate(copyID) }.wait(), "the copy \(copyID) is known as dropped")
        XCTAssertEqual(try server.cli("XLEN", "s"), "7")
    }

    /// A reply lost for real: Redis is told to answer nothing more on the writer's command
    /// connection (`CLIENT REPLY OFF`), so it appends what follows while the client hears of
    /// none of it; `CLIENT PAUSE WRITE` then holds the next appends unexecuted, and
    /// `CLIENT KILL` ends the connection. The client takes back all five; 1-3 had landed.
    func testAppendsALostConnectionNeverConfirmedAreSentAgainOnlyIfTheyHadNotLanded() throws {
        let server = try self.makeServer()
        let (writer, _) = try self.makeStreamClient(port: server.port, writerField: "w")
        // A reader that keeps copies, as Node's adapter does: it numbers and filters nothing.
        let (plainReader, plainEntries) = try self.makeStreamClient(port: server.port)
        let (admin, _) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.waitUntilConnected(admin)
        try eventually { try self.connected(writer) && self.connected(plainReader) }
        try self.append(writer, writer: "node-a", "0")
        // Answered in order: once PING is, Redis has confirmed entry 0 to the client.
        XCTAssertEqual(try self.send(writer, "PING"), .status("PONG"))
        guard case .integer(let connection) = try self.send(writer, "CLIENT", "ID") else { return XCTFail("CLIENT ID is a number") }

        try self.loop.submit { _ = writer.value.send(["CLIENT", "REPLY", "OFF"].map { ByteBuffer(string: $0) }) }.wait()
        try self.append(writer, writer: "node-a", "1", "2", "3")
        try eventually { try server.cli("XLEN", "s") == "4" }
        try server.cli("CLIENT", "PAUSE", "60000", "WRITE")
        try self.append(writer, writer: "node-a", "4", "5")
        XCTAssertEqual(try server.cli("CLIENT", "KILL", "ID", "\(connection)"), "1")
        try server.cli("CLIENT", "UNPAUSE")
        try self.append(writer, writer: "node-a", "6")

        try eventually { try self.stream(admin).last?.value == "6" && self.loop.submit { writer.value.outboxCount == 0 }.wait() }
        let entries = try self.stream(admin)
        XCTAssertEqual(entries.map(\.value), ["0", "1", "2", "3", "4", "5", "6"], "each entry once, in the order appended")
        XCTAssertEqual(entries.map(\.sequence), ["1", "2", "3", "4", "5", "6", "7"])
        try eventually { try self.read(plainEntries).count >= 7 * 3 }
        XCTAssertEqual(try self.read(plainEntries).filter { $0.hasPrefix("v=") }, (0...6).map { "v=\($0)" }, "a reader keeping copies gets each once")
        XCTAssertEqual(self.logs.lines.filter { $0.message.contains("had reached Redis; not sending them again") }.map { $0.metadata["redis.landed"] }, ["3"])
    }

    /// Redis restarted without persistence: the stream is gone with what had landed, so
    /// everything the lost connection never confirmed is appended again.
    func testAfterAResetStreamEverythingUnconfirmedIsSentAgain() throws {
        let server = try self.makeServer()
        let (writer, _) = try self.makeStreamClient(port: server.port, writerField: "w")
        try eventually { try self.connected(writer) }
        try self.append(writer, writer: "node-a", "0")
        XCTAssertEqual(try self.send(writer, "PING"), .status("PONG"))
        try self.loop.submit { _ = writer.value.send(["CLIENT", "REPLY", "OFF"].map { ByteBuffer(string: $0) }) }.wait()
        try self.append(writer, writer: "node-a", "1", "2")
        try eventually { try server.cli("XLEN", "s") == "3" }
        server.kill()
        try server.start()
        try self.append(writer, writer: "node-a", "3")
        let (admin, _) = try self.makeClient("redis://127.0.0.1:\(server.port)")
        try self.waitUntilConnected(admin)
        try eventually { try self.stream(admin).last?.value == "3" && self.loop.submit { writer.value.outboxCount == 0 }.wait() }
        XCTAssertEqual(try self.stream(admin).map(\.value), ["1", "2", "3"], "what Redis lost and was never confirmed comes again, in order")
    }

    private func send(_ client: NIOLoopBound<RedisStreamClient>, _ arguments: String...) throws -> RedisReply {
        try self.loop.flatSubmit { client.value.send(arguments.map { ByteBuffer(string: $0) }) }.wait()
    }

    /// The stream as Redis holds it: each entry's `v` and number.
    private func stream(_ admin: NIOLoopBound<RedisClient>) throws -> [(value: String?, sequence: String?)] {
        try RedisStreamEntry.entries(ofRange: try self.send(admin, "XRANGE", "s", "-", "+")).map { entry in
            (entry.fields["v"].map { String(buffer: $0) }, entry.fields["sidecast-seq"].map { String(buffer: $0) })
        }
    }

    /// Entries written as "a=1 b=2" as the entries list reads them: each entry's fields sorted
    /// by name, one string per field.
    private func fields(_ entries: String...) -> [String] {
        entries.flatMap { $0.split(separator: " ").map(String.init).sorted() }
    }
}
