import NIOCore
import SidecastJSON
import SocketIO

/// One attached backend connection, after its `hello`. Confined to the bridge's event loop;
/// its connection may be on another of the node's loops (``BackendChannelHandler``).
final class Backend {
    let id: Int
    let group: String
    let namespaces: Set<String>
    let authorizes: Bool
    private let channel: Channel
    /// The bridge's loop, where this object lives.
    private let eventLoop: EventLoop
    /// Whether the connection is on another loop than the bridge's: its lines then wait in
    /// `outbox` and cross to its loop together, once per round of the bridge's loop.
    private let isElsewhere: Bool
    private var outbox: [ByteBuffer] = []
    /// Authorization requests (by `req`) this backend was asked and has not answered.
    var pendingAuthorizations: Set<Int> = []
    /// Sockets whose clients stopped being read because this backend fell behind, by id.
    private var pausedSockets: [String: BridgeSocket] = [:]
    private(set) var isAttached = true
    /// Set while the handler carries out a batch of lines read together: their replies are
    /// flushed once at the end of the batch, one system call instead of one per reply.
    private var isReadingBatch = false
    private var hasUnflushedLines = false
    /// A flush is queued for the end of the event loop's current round.
    private var isFlushScheduled = false

    /// A backend on `channel`, for a bridge on `eventLoop` (by default the channel's).
    init(id: Int, hello: BackendCommand.Hello, channel: Channel, eventLoop: EventLoop? = nil) {
        self.id = id
        self.group = hello.group
        self.namespaces = Set(hello.namespaces)
        self.authorizes = hello.authorize
        self.channel = channel
        self.eventLoop = eventLoop ?? channel.eventLoop
        self.isElsewhere = self.eventLoop !== channel.eventLoop
    }

    /// Writes one message as an NDJSON line.
    func send(_ message: JSONValue) {
        send(line: Self.line(message, allocator: channel.allocator))
    }

    /// Writes a line that is already encoded, with its "\n": one encoding serves every group.
    /// Lines are flushed at the end of the batch of lines being read from this backend, or
    /// else at the end of the event loop's current round: the events of every client read in
    /// one round reach the backend in one system call, and a lone event leaves as soon as the
    /// round's reads are handled, without waiting for anything.
    func send(line: ByteBuffer) {
        guard isAttached else { return }
        if isElsewhere {
            outbox.append(line)
        } else {
            channel.write(line, promise: nil)
        }
        hasUnflushedLines = true
        guard !isReadingBatch, !isFlushScheduled else { return }
        isFlushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            isFlushScheduled = false
            flushLines()
        }
    }

    private func flushLines() {
        guard hasUnflushedLines else { return }
        hasUnflushedLines = false
        guard isElsewhere else { return channel.flush() }
        let (lines, channel) = (outbox, self.channel)
        outbox.removeAll(keepingCapacity: true)
        channel.eventLoop.execute {
            for line in lines { channel.write(line, promise: nil) }
            channel.flush()
        }
    }

    /// The handler starts carrying out lines of one read; replies wait for `endReadBatch()`.
    func beginReadBatch() {
        isReadingBatch = true
    }

    /// The read's lines are all carried out: flush their replies together.
    func endReadBatch() {
        isReadingBatch = false
        flushLines()
    }

    /// Writes the line and then closes the connection.
    func sendAndClose(_ message: JSONValue) {
        guard isAttached else { return }
        isAttached = false
        hasUnflushedLines = false
        let channel = self.channel
        let (queued, last) = (outbox, Self.line(message, allocator: channel.allocator))
        outbox.removeAll()
        // On the connection's loop, what is queued goes first, in the same hand-off.
        let writeAndClose: @Sendable () -> Void = {
            for line in queued { channel.write(line, promise: nil) }
            channel.writeAndFlush(last).whenComplete { _ in channel.close(promise: nil) }
        }
        if isElsewhere {
            channel.eventLoop.execute(writeAndClose)
        } else {
            writeAndClose()
        }
    }

    static func line(_ message: JSONValue, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 256)
        message.write(to: &buffer)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }

    /// Sends a line produced by `socket`'s client. When the backend can't keep up, that client
    /// stops being read until the backend drains its buffer: memory stays bounded by the
    /// channel's high-water mark plus one read per stalled client, never an unbounded queue.
    func send(line: ByteBuffer, from socket: BridgeSocket) {
        send(line: line)
        if isAttached, !channel.isWritable, pausedSockets.updateValue(socket, forKey: socket.id) == nil {
            socket.pauseReading()
        }
    }

    /// Resumes every client paused on this backend; called when it drained or went away.
    func resumePausedSockets() {
        let paused = pausedSockets
        pausedSockets.removeAll()
        for socket in paused.values { socket.resumeReading() }
    }

    /// Whether the backend's socket buffer has room; false means it is not keeping up.
    var isWritable: Bool { channel.isWritable }

    func detached() {
        isAttached = false
    }

    func close() {
        channel.close(promise: nil)
    }
}
