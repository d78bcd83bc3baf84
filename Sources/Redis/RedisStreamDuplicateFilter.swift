import NIOCore

/// A reader's judge of the copies a retry appends to a stream.
///
/// A writer that appends again what a lost connection never confirmed (as
/// ``RedisStreamClient`` does) may append an entry twice: Redis can have taken the first
/// `XADD`, and readers read it, before the connection died with the reply. So such a writer
/// numbers its entries in the field ``sequenceField`` (increasing, a retry keeping its
/// number), and a reader hands on an entry only if its number is above every number it
/// handed on from the same writer, named by the entry's `writerField`.
///
/// Entries without a number are handed on as they come: those of writers that do not number,
/// such as Node's `@socket.io/redis-streams-adapter` (whose `RedisStreamsAdapter.decode` in
/// `lib/adapter.ts` reads `uid`, `nsp`, `type` and `data` and nothing else, so it ignores the
/// number in turn).
///
/// What this relies on: a writer id is one writer's (sidecast's uid is fresh per process), so
/// its numbers only grow; and a writer appends in its own order, retries included (the client
/// puts them back ahead of anything queued since), so a number below one handed on is a copy,
/// never a late first. A stream reset by a Redis restart without persistence changes neither:
/// the writers keep numbering from where they were.
public struct RedisStreamDuplicateFilter: Sendable {
    /// The number's field; Node's adapter and emitters leave it out.
    public static let sequenceField = "sidecast-seq"

    /// What to do with one entry.
    public enum Verdict: Equatable, Sendable {
        /// No writer or no number: hand it on, as before numbering.
        case unnumbered
        /// Above everything handed on from its writer: hand it on.
        case new
        /// At or below the highest number handed on from its writer: a copy, to drop.
        case duplicate(sequence: UInt64, highest: UInt64)
    }

    private struct Writer {
        var highest: UInt64
        var lastSeen: NIODeadline
    }

    /// The field that names each entry's writer (the socket.io adapters' `uid`).
    public let writerField: String
    /// How long a writer is remembered after its last numbered entry. A node heartbeats every
    /// few seconds, so this is long past its death; only a copy appended after a writer was
    /// cut off from Redis that long would pass again.
    public let forgetAfter: TimeAmount
    private var writers: [String: Writer] = [:]
    private var nextSweep: NIODeadline?

    public init(writerField: String, forgetAfter: TimeAmount = .hours(1)) {
        self.writerField = writerField
        self.forgetAfter = forgetAfter
    }

    /// The writers remembered now.
    public var writerCount: Int { writers.count }

    /// Judges the next entry read, in stream order, and remembers its number if it is new.
    public mutating func judge(_ fields: [String: ByteBuffer], now: NIODeadline = .now()) -> Verdict {
        sweep(now)
        guard let writerText = fields[writerField], let numberText = fields[Self.sequenceField],
              let number = UInt64(String(buffer: numberText))
        else { return .unnumbered }
        let writer = String(buffer: writerText)
        if let known = writers[writer], number <= known.highest {
            writers[writer]?.lastSeen = now
            return .duplicate(sequence: number, highest: known.highest)
        }
        writers[writer] = Writer(highest: number, lastSeen: now)
        return .new
    }

    /// Forgets, about once a minute, the writers gone quiet, so that the nodes a cluster has
    /// seen come and go do not add up.
    private mutating func sweep(_ now: NIODeadline) {
        guard let nextSweep else {
            self.nextSweep = now + .minutes(1)
            return
        }
        guard now >= nextSweep else { return }
        self.nextSweep = now + .minutes(1)
        let oldest = now - forgetAfter
        writers = writers.filter { $0.value.lastSeen >= oldest }
    }
}
