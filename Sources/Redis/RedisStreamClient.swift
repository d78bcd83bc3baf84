import DequeModule
import Logging
import Metrics
import NIOCore

/// Where a ``RedisStreamClient`` appends and reads, and how much at a time.
public struct RedisStreamConfiguration: Sendable, Hashable {
    /// The stream's key.
    public var name: String
    /// `XADD … MAXLEN ~ maxLength`: the stream is trimmed to about this many entries.
    public var maxLength: Int
    /// Entries fetched per `XREAD`.
    public var readCount: Int
    /// How long one `XREAD` blocks for new entries before it is sent again.
    public var blockTime: TimeAmount
    /// The field naming each entry's writer (the socket.io adapters' `uid`). With one, the
    /// client numbers what it appends and its reader drops the copies that retries append
    /// (see ``RedisStreamDuplicateFilter``); every writer id must then be one client's.
    public var writerField: String?

    public init(
        name: String, maxLength: Int = 10_000, readCount: Int = 100, blockTime: TimeAmount = .seconds(2), writerField: String? = nil
    ) {
        self.name = name
        self.maxLength = max(1, maxLength)
        self.readCount = max(1, readCount)
        self.blockTime = max(.milliseconds(1), blockTime)
        self.writerField = writerField
    }
}

/// A client of one Redis stream that survives Redis outages: one link appends (`XADD` with
/// `MAXLEN ~`) and runs other commands, one link blocks in `XREAD` (a blocked connection can do
/// nothing else), each reconnecting on its own with backoff.
///
/// The reader resumes from the id of the last entry it handed on, so an outage loses nothing
/// that is still in the stream; the first read starts after the stream's last entry at start.
/// Appends made while the command link is down wait in a bounded outbox and go out in order
/// when it is back, with those a lost connection never confirmed (Redis may have lost them,
/// and readers skip nothing that a retry adds later). Appends also wait for the reader's first
/// position: whatever answers them is then read.
///
/// A retry can append an entry Redis had taken, and readers read, before the connection was
/// lost with its reply. With a ``RedisStreamConfiguration/writerField`` the client numbers its
/// appends and hands on no entry twice (``RedisStreamDuplicateFilter``); and before it sends
/// such appends again, it looks for them in the stream and leaves out those that landed, so
/// that readers which do not drop copies (Node's adapter) get them once too.
///
/// Standalone topology only. Confined to one event loop (the caller's); call every method on
/// it.
public final class RedisStreamClient {
    public let eventLoop: EventLoop
    public let stream: RedisStreamConfiguration
    /// Receives the entries other writers (and this one) appended, in stream order.
    public var onEntry: ((RedisStreamEntry) -> Void)?
    /// Called when ``isConnected`` changes.
    public var onStateChange: ((Bool) -> Void)?

    private let configuration: RedisClientConfiguration
    private let logger: Logger
    private let metrics: RedisClientMetrics
    private let commandLink: RedisLink
    private let readerLink: RedisLink
    private var commandChannel: Channel?
    private var readerChannel: Channel?
    /// Appends waiting for the command link, oldest first.
    private var outbox: Deque<RedisCommand> = []
    private var reportedQueued = 0
    private var reportedConnected = false
    private var flushScheduled = false
    private var closed = false
    /// The number of the last entry appended, with a ``RedisStreamConfiguration/writerField``.
    private var lastSequence: UInt64 = 0
    private var duplicates: RedisStreamDuplicateFilter?
    /// The id of the last entry Redis confirmed appending for this client (an `XADD` reply),
    /// or, before any, the stream's last id when the reader started: every append whose reply
    /// a lost connection took is further on in the stream, if Redis took it.
    private var lastConfirmedID: ByteBuffer?
    /// How many of the outbox's first entries went out on a connection lost before Redis
    /// confirmed them: the command link looks for them in the stream before sending them again.
    private var unconfirmedCount = 0
    /// The ids of the entries the reader dropped as copies, oldest first, to tell a restore
    /// what the reader did; as many as the stream keeps, since older ones are trimmed away.
    private var droppedIDs: Deque<String> = []
    private var droppedIDSet: Set<String> = []
    private let duplicateDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "stream_duplicate")])
    /// The id of the last entry handed on (during ``onEntry``, that entry's); nil until the
    /// first read position is known.
    public private(set) var lastID: String?

    public init(configuration: RedisClientConfiguration, stream: RedisStreamConfiguration, eventLoop: EventLoop, logger: Logger) throws {
        guard case .standalone = configuration.topology else {
            throw RedisURLError("the streams client needs one Redis server, not Sentinel or a Cluster")
        }
        self.configuration = configuration
        self.stream = stream
        self.eventLoop = eventLoop
        self.logger = logger
        self.metrics = RedisClientMetrics(outboxLimit: configuration.outboxLimit, logger: logger)
        self.commandLink = RedisLink(role: .commands, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.readerLink = RedisLink(role: .streamReader, configuration: configuration, eventLoop: eventLoop, logger: logger)
        self.commandLink.delegate = self
        self.readerLink.delegate = self
        self.duplicates = stream.writerField.map { RedisStreamDuplicateFilter(writerField: $0) }
    }

    /// Both links are up.
    public var isConnected: Bool {
        self.commandChannel != nil && self.readerChannel != nil
    }

    /// Appends waiting for Redis.
    public var outboxCount: Int { self.outbox.count }

    /// Appends dropped because the outbox was full, over the client's lifetime.
    public var droppedAppends: Int { self.metrics.dropped }

    /// Whether the reader dropped the entry `id` as a copy of one it had handed on (among the
    /// last ``RedisStreamConfiguration/maxLength`` it dropped).
    public func droppedAsDuplicate(_ id: String) -> Bool {
        self.droppedIDSet.contains(id)
    }

    /// Starts connecting both links and returns at once; failures are retried in the background.
    public func start() {
        self.eventLoop.preconditionInEventLoop()
        self.commandLink.start()
        self.readerLink.start()
    }

    /// Sends what the outbox holds if Redis is reachable, waits for Redis to have handled it,
    /// then closes both links. Appends still queued are dropped (and logged).
    public func shutdown() -> EventLoopFuture<Void> {
        self.eventLoop.preconditionInEventLoop()
        guard !self.closed else { return self.eventLoop.makeSucceededVoidFuture() }
        self.closed = true
        return self.drain().assumeIsolated()
            .flatMap { () -> EventLoopFuture<Void> in
                EventLoopFuture.andAllComplete([self.commandLink.close(), self.readerLink.close()], on: self.eventLoop)
            }
            .map {
                if !self.outbox.isEmpty {
                    self.logger.warning("Redis stream client shut down with undelivered entries", metadata: ["redis.undelivered": "\(self.outbox.count)"])
                    self.outbox.removeAll()
                    self.unconfirmedCount = 0
                    self.reportQueued()
                }
            }
            .nonisolated()
    }

    /// Writes the outbox and waits, at most the connect timeout, for a PING to come back.
    private func drain() -> EventLoopFuture<Void> {
        guard let channel = self.commandChannel, channel.isActive else { return self.eventLoop.makeSucceededVoidFuture() }
        self.writeOutbox(to: channel)
        let done = self.eventLoop.makePromise(of: Void.self)
        let timeout = self.eventLoop.scheduleTask(in: self.configuration.connectTimeout) { done.succeed() }
        self.send(RedisCommand(["PING"])).whenComplete { _ in
            timeout.cancel()
            done.succeed()
        }
        return done.futureResult
    }

    // MARK: - Appending and commands

    /// `XADD <stream> MAXLEN ~ <maxLength> * field value …`, now if Redis is reachable,
    /// otherwise queued in the outbox. With a ``RedisStreamConfiguration/writerField``, the
    /// entry's number comes last, in ``RedisStreamDuplicateFilter/sequenceField``.
    public func append(_ fields: [(name: String, value: ByteBuffer)]) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.closed else {
            return self.logger.debug("stream append after shutdown dropped", metadata: ["redis.stream": "\(self.stream.name)"])
        }
        var arguments = [ByteBuffer]()
        arguments.reserveCapacity(8 + 2 * fields.count)
        for text in ["XADD", self.stream.name, "MAXLEN", "~", String(self.stream.maxLength), "*"] {
            arguments.append(ByteBuffer(string: text))
        }
        for field in fields {
            arguments.append(ByteBuffer(string: field.name))
            arguments.append(field.value)
        }
        if self.duplicates != nil {
            // Numbered once, here: a retry sends these same arguments again.
            self.lastSequence += 1
            arguments.append(ByteBuffer(string: RedisStreamDuplicateFilter.sequenceField))
            arguments.append(ByteBuffer(string: String(self.lastSequence)))
        }
        let command = RedisCommand(arguments)
        // Behind anything queued, so the stream keeps this node's order.
        if self.outbox.isEmpty, self.lastID != nil, let channel = self.commandChannel, channel.isActive {
            self.write(command, to: channel)
        } else {
            self.enqueue([command])
        }
    }

    /// Sends one command on the command link and returns Redis's reply; fails at once with
    /// ``RedisClientError/notConnected`` while that link is down.
    public func send(_ arguments: [ByteBuffer]) -> EventLoopFuture<RedisReply> {
        self.eventLoop.preconditionInEventLoop()
        guard !arguments.isEmpty else { return self.eventLoop.makeFailedFuture(RedisClientError.emptyCommand) }
        return self.send(RedisCommand(arguments))
    }

    private func send(_ command: RedisCommand) -> EventLoopFuture<RedisReply> {
        guard let channel = self.commandChannel, channel.isActive else {
            return self.eventLoop.makeFailedFuture(RedisClientError.notConnected)
        }
        let reply = self.eventLoop.makePromise(of: RedisReply.self)
        channel.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        return reply.futureResult
    }

    /// Writes now and flushes once per event loop tick, so a burst of appends shares a syscall.
    /// Written without a promise, an append's reply is read and dropped, and a connection lost
    /// before it came hands the append back (``requeue(_:)``).
    private func write(_ command: RedisCommand, to channel: Channel) {
        channel.write(RedisCommandRequest(command: command, reply: nil), promise: nil)
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            channel.flush()
        }
    }

    private func writeOutbox(to channel: Channel) {
        guard !self.outbox.isEmpty else { return }
        let queued = self.outbox
        self.outbox.removeAll()
        self.unconfirmedCount = 0
        self.reportQueued()
        self.logger.info("appending entries queued while Redis was unreachable", metadata: ["redis.queued": "\(queued.count)"])
        for command in queued {
            channel.write(RedisCommandRequest(command: command, reply: nil), promise: nil)
        }
        channel.flush()
    }

    /// Appends to the outbox, dropping the oldest past the limit.
    private func enqueue(_ commands: some Collection<RedisCommand>) {
        self.outbox.append(contentsOf: commands)
        self.trimOutbox()
    }

    /// Takes back appends a lost connection never confirmed, ahead of anything queued since.
    private func requeue(_ commands: [RedisCommand]) {
        guard !self.closed else { return }
        self.logger.info("queueing again stream entries Redis never confirmed", metadata: ["redis.requeued": "\(commands.count)"])
        self.outbox.insert(contentsOf: commands, at: 0)
        self.unconfirmedCount += commands.count
        self.trimOutbox()
    }

    private func trimOutbox() {
        let excess = self.outbox.count - self.configuration.outboxLimit
        if excess > 0 {
            self.outbox.removeFirst(excess)
            self.unconfirmedCount = max(0, self.unconfirmedCount - excess)
            self.metrics.didDrop(excess)
        }
        self.reportQueued()
    }

    private func reportQueued() {
        self.metrics.queuedChanged(by: self.outbox.count - self.reportedQueued)
        self.reportedQueued = self.outbox.count
    }

    private func connectivityChanged() {
        let connected = self.isConnected
        guard connected != self.reportedConnected else { return }
        self.reportedConnected = connected
        self.metrics.connectivityChanged(connected)
        self.onStateChange?(connected)
    }

    // MARK: - Reading

    /// Where the first read starts: after the stream's last entry, or from the start of a
    /// stream that does not exist yet (every entry it gets is newer than this call).
    private func findStart(on channel: Channel) -> EventLoopFuture<Void> {
        guard self.lastID == nil else { return channel.eventLoop.makeSucceededVoidFuture() }
        let reply = channel.eventLoop.makePromise(of: RedisReply.self)
        let command = RedisCommand(["XREVRANGE", self.stream.name, "+", "-", "COUNT", "1"])
        channel.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        return reply.futureResult.assumeIsolated().flatMapThrowing { reply in
            let last = try RedisStreamEntry.entries(ofRange: reply).first
            guard self.lastID == nil else { return }
            let start = last?.id ?? "0-0"
            self.lastID = start
            if self.lastConfirmedID == nil { self.lastConfirmedID = ByteBuffer(string: start) }
            if let commands = self.commandChannel, commands.isActive { self.writeOutbox(to: commands) }
        }.nonisolated()
    }

    /// One `XREAD BLOCK` after the last id, then the next, for as long as `channel` is the
    /// reader's. A read unanswered well past its block time means a dead connection: closing
    /// it lets the link reconnect.
    private func read(on channel: Channel) {
        guard self.readerChannel === channel, channel.isActive, let lastID = self.lastID else { return }
        let command = RedisCommand([
            "XREAD", "BLOCK", String(self.stream.blockTime.nanoseconds / 1_000_000), "COUNT", String(self.stream.readCount),
            "STREAMS", self.stream.name, lastID,
        ])
        let reply = channel.eventLoop.makePromise(of: RedisReply.self)
        channel.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        let watchdog = self.eventLoop.scheduleTask(in: self.stream.blockTime + self.configuration.connectTimeout) {
            channel.close(promise: nil)
        }
        reply.futureResult.assumeIsolated().whenComplete { result in
            watchdog.cancel()
            switch result {
            case .success(let reply):
                self.received(reply, on: channel)
            case .failure:
                // The link reports the loss and reads again once reconnected.
                break
            }
        }
    }

    private func received(_ reply: RedisReply, on channel: Channel) {
        let entries: [RedisStreamEntry]
        do {
            entries = try RedisStreamEntry.entries(ofRead: reply)
        } catch {
            // Another key of that name, or an unexpected reply: try again later rather than spin.
            self.logger.warning("cannot read the Redis stream; retrying", metadata: ["redis.stream": "\(self.stream.name)", "error": "\(error)"])
            self.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.maxBackoff) { self.read(on: channel) }
            return
        }
        for entry in entries where self.readerChannel === channel {
            self.lastID = entry.id
            if self.isDuplicate(entry) { continue }
            self.onEntry?(entry)
        }
        self.read(on: channel)
    }

    /// Judges `entry` and, when it is a copy, counts, logs and remembers it.
    private func isDuplicate(_ entry: RedisStreamEntry) -> Bool {
        guard case .duplicate(let sequence, let highest) = self.duplicates?.judge(entry.fields) else { return false }
        self.duplicateDrops.increment()
        self.logger.debug("dropping a copy of a stream entry already read", metadata: [
            "redis.entry": "\(entry.id)", "redis.sequence": "\(sequence)", "redis.highest-sequence": "\(highest)",
        ])
        self.droppedIDs.append(entry.id)
        self.droppedIDSet.insert(entry.id)
        if self.droppedIDs.count > self.stream.maxLength, let oldest = self.droppedIDs.popFirst() {
            self.droppedIDSet.remove(oldest)
        }
        return true
    }

    // MARK: - Sending again

    /// Before the command link sends again what a lost connection never confirmed, reads what
    /// the stream holds after the last entry Redis confirmed. An entry of this client's writer
    /// numbered at or above a re-sent one means that append landed, and so did every earlier
    /// one (a connection keeps its order): those leave the outbox rather than reach readers
    /// that keep copies (Node's adapter) twice. The rest go again, in order, ahead of anything
    /// queued since. A stream reset by a Redis restart without persistence holds none of them,
    /// so all go again; so do all when the stream cannot be read (sidecast readers still drop
    /// the copies). A lost connection fails the link's preparation: the next one looks again.
    ///
    /// Not covered: an append Redis takes from a connection the client gave up on only after
    /// this look (a half-open connection whose data Redis reads late) is still sent twice.
    private func skipLanded(on channel: Channel) -> EventLoopFuture<Void> {
        guard self.unconfirmedCount > 0, let start = self.lastConfirmedID.map({ String(buffer: $0) }) else {
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        var wanted: [String: UInt64] = [:]
        for command in self.outbox.prefix(self.unconfirmedCount) {
            guard let (writer, sequence) = self.numbering(of: command) else { continue }
            wanted[writer] = max(wanted[writer] ?? 0, sequence)
        }
        guard !wanted.isEmpty else { return channel.eventLoop.makeSucceededVoidFuture() }
        return self.landedSequences(after: start, wanted: wanted, found: [:], on: channel).assumeIsolated().map { found in
            self.dropLanded(found)
        }.nonisolated()
    }

    /// The highest number of each wanted writer in the stream after `start`, read a page of
    /// ``RedisStreamConfiguration/readCount`` at a time until all the wanted numbers are found
    /// or the stream ends; nil when Redis refuses the read (a key of another type, or a Redis
    /// before 6.2, without exclusive ranges).
    private func landedSequences(
        after start: String, wanted: [String: UInt64], found: [String: UInt64], on channel: Channel
    ) -> EventLoopFuture<[String: UInt64]?> {
        let command = RedisCommand(["XRANGE", self.stream.name, "(" + start, "+", "COUNT", String(self.stream.readCount)])
        let reply = channel.eventLoop.makePromise(of: RedisReply.self)
        channel.writeAndFlush(RedisCommandRequest(command: command, reply: reply)).whenFailure { reply.fail($0) }
        return reply.futureResult.assumeIsolated().flatMap { reply -> EventLoopFuture<[String: UInt64]?> in
            let entries: [RedisStreamEntry]
            do {
                entries = try RedisStreamEntry.entries(ofRange: reply)
            } catch {
                self.logger.warning(
                    "cannot look in the Redis stream for the entries a lost connection never confirmed; sending them all again",
                    metadata: ["redis.stream": "\(self.stream.name)", "error": "\(error)"]
                )
                return channel.eventLoop.makeSucceededFuture(nil)
            }
            var found = found
            if let writerField = self.stream.writerField {
                for entry in entries {
                    guard let writer = entry.fields[writerField].map({ String(buffer: $0) }), wanted[writer] != nil,
                          let number = entry.fields[RedisStreamDuplicateFilter.sequenceField],
                          let sequence = UInt64(String(buffer: number))
                    else { continue }
                    found[writer] = max(found[writer] ?? 0, sequence)
                }
            }
            let all = wanted.allSatisfy { found[$0.key] ?? 0 >= $0.value }
            guard !all, entries.count == self.stream.readCount, let last = entries.last else {
                return channel.eventLoop.makeSucceededFuture(found)
            }
            return self.landedSequences(after: last.id, wanted: wanted, found: found, on: channel)
        }.nonisolated()
    }

    /// Takes out of the outbox's unconfirmed entries those numbered at or below what `found`
    /// holds for their writer.
    private func dropLanded(_ found: [String: UInt64]?) {
        let count = min(self.unconfirmedCount, self.outbox.count)
        self.unconfirmedCount = 0
        guard let found, count > 0 else { return }
        let kept = self.outbox.prefix(count).filter { command in
            guard let (writer, sequence) = self.numbering(of: command), let highest = found[writer] else { return true }
            return sequence > highest
        }
        guard kept.count < count else { return }
        self.outbox.replaceSubrange(0..<count, with: kept)
        self.reportQueued()
        self.logger.info("stream entries a lost connection never confirmed had reached Redis; not sending them again", metadata: [
            "redis.stream": "\(self.stream.name)", "redis.landed": "\(count - kept.count)", "redis.requeued": "\(kept.count)",
        ])
    }

    /// The writer and number of an append this client numbered: `XADD`'s six arguments, then
    /// field-value pairs, the number's last (see ``append(_:)``).
    private func numbering(of command: RedisCommand) -> (writer: String, sequence: UInt64)? {
        guard let writerField = self.stream.writerField else { return nil }
        let arguments = command.arguments
        guard arguments.count >= 10, arguments.count % 2 == 0,
              let sequence = UInt64(String(buffer: arguments[arguments.count - 1]))
        else { return nil }
        for index in stride(from: 6, to: arguments.count - 2, by: 2) where arguments[index].readableBytesView.elementsEqual(writerField.utf8) {
            return (String(buffer: arguments[index + 1]), sequence)
        }
        return nil
    }
}

extension RedisStreamClient: RedisLifecycle {}

extension RedisStreamClient: RedisLinkDelegate {
    func linkTarget(_ link: RedisLink, failed: RedisTarget?) -> EventLoopFuture<RedisTarget> {
        self.eventLoop.makeSucceededFuture(RedisTarget(url: self.configuration.url))
    }

    func linkPrepare(_ link: RedisLink, channel: Channel) -> EventLoopFuture<Void> {
        switch link.role {
        case .streamReader: return self.findStart(on: channel)
        case .commands: return self.skipLanded(on: channel)
        case .subscriptions, .sentinel: return channel.eventLoop.makeSucceededVoidFuture()
        }
    }

    func linkDidConnect(_ link: RedisLink, channel: Channel) {
        switch link.role {
        case .streamReader:
            self.readerChannel = channel
            self.read(on: channel)
        case .commands, .subscriptions, .sentinel:
            self.commandChannel = channel
            if let handler = try? channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self) {
                handler.onUnansweredPublishes = { [weak self] commands in self?.requeue(commands) }
                if self.duplicates != nil {
                    handler.onAcceptedPublish = { [weak self] reply in
                        if case .bulk(let id) = reply { self?.lastConfirmedID = id }
                    }
                }
                handler.onRefusedPublish = { [weak self] _, error in
                    self?.logger.warning("Redis refused a stream entry", metadata: ["redis.error": "\(error)", "redis.stream": "\(self?.stream.name ?? "")"])
                }
            }
            if self.lastID != nil { self.writeOutbox(to: channel) }
        }
        self.connectivityChanged()
    }

    func linkDidDisconnect(_ link: RedisLink) {
        switch link.role {
        case .streamReader: self.readerChannel = nil
        case .commands, .subscriptions, .sentinel: self.commandChannel = nil
        }
        self.connectivityChanged()
    }
}
