import NIOCore

/// Lets a repeated warning through at most once per `interval` for each key, counting the
/// occurrences it holds back: a problem that repeats with every client event costs one log
/// line per interval, and that line still says how often it happened.
///
/// Keys are names sidecast knows (namespaces, groups, kinds of refusal), never client input, so
/// the table stays as small as the configuration. Here, in the lowest module, so that every layer
/// throttles its warnings the same way.
public struct WarningThrottle {
    public let interval: TimeAmount
    private var windows: [String: Window] = [:]

    private struct Window {
        /// When the last warning for the key was let through.
        var opened: NIODeadline
        /// Occurrences since then, not yet reported.
        var heldBack: Int
    }

    public init(interval: TimeAmount) {
        self.interval = interval
    }

    /// Records `count` occurrences of `key` at `now`. Returns the number of occurrences the
    /// warning should report (these and those held back since the key's last warning), or `nil`
    /// while the key was warned about less than `interval` ago.
    public mutating func record(_ key: String, count: Int = 1, at now: NIODeadline = .now()) -> Int? {
        if var window = windows[key], now < window.opened + interval {
            window.heldBack += count
            windows[key] = window
            return nil
        }
        let count = (windows[key]?.heldBack ?? 0) + count
        windows[key] = Window(opened: now, heldBack: 0)
        return count
    }
}
