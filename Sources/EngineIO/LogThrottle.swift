import NIOCore

/// Lets through at most one line per `interval` of a warning that clients can cause at will, so
/// that they cannot flood the log, and counts the ones it held back so the next line can say
/// how many there were. The first occurrence is always logged at once.
struct LogThrottle {
    let interval: TimeAmount
    private var nextLine: NIODeadline?
    private var heldBack = 0

    init(interval: TimeAmount) {
        self.interval = interval
    }

    /// Nil when this occurrence is to be held back; otherwise how many were held back since
    /// the last line.
    mutating func admit(at now: NIODeadline) -> Int? {
        if let nextLine = self.nextLine, now < nextLine {
            self.heldBack += 1
            return nil
        }
        self.nextLine = now + self.interval
        defer { self.heldBack = 0 }
        return self.heldBack
    }
}
