import Foundation

/// One reading of a process's memory and CPU time, from /proc.
struct ProcessSample: Sendable {
    /// Resident set size in bytes (VmRSS).
    var rss: Int
    /// User plus system CPU time in seconds (utime + stime), all threads.
    var cpu: Double
    /// The system part alone (stime): on loopback it includes the receiving side's TCP work,
    /// which the kernel runs in the sender's system call.
    var systemCPU: Double
    /// Voluntary context switches of all its threads: each is a thread going to sleep in
    /// `epoll_wait` (or another blocking call) and being woken again, so their count per message
    /// says how many event-loop wake-ups the message cost.
    var voluntarySwitches: Int
    var taken: ContinuousClock.Instant
}

/// Reads /proc/PID/status and /proc/PID/stat. CPU time comes in clock ticks (usually 10 ms),
/// so windows of a few seconds are the shortest worth measuring.
enum ProcessSampler {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func sample(pid: Int32) throws -> ProcessSample {
        let taken = ContinuousClock.now
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { throw BenchError("no VmRSS in /proc/\(pid)/status") }

        // The command name in field 2 may hold spaces; the fields after its ')' start at field 3.
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        guard let close = stat.lastIndex(of: ")") else { throw BenchError("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let utime = Double(fields[11]), let stime = Double(fields[12]) else {
            throw BenchError("unreadable /proc/\(pid)/stat")
        }
        return ProcessSample(
            rss: kib * 1024, cpu: (utime + stime) / ticksPerSecond, systemCPU: stime / ticksPerSecond,
            voluntarySwitches: voluntarySwitches(pid: pid), taken: taken
        )
    }

    /// The sum of `voluntary_ctxt_switches` over /proc/PID/task/*/status (the process's own
    /// status file counts its main thread only). A thread that ends between the listing and the
    /// read is skipped.
    static func voluntarySwitches(pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.reduce(0) { sum, task in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("voluntary_ctxt_switches:") }),
                let count = line.split(separator: "\t").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) })
            else { return sum }
            return sum + count
        }
    }

    /// This process's own CPU time, to judge whether the load generator was the bottleneck.
    static func ownCPU() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

/// Setup of this process: file limits, core pinning, what machine this is.
enum Host {
    /// Raises the soft open-file limit to the hard one and returns it.
    static func raiseFileLimit() -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(limit.rlim_cur)
    }

    static var coreCount: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    static var cpuModel: String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
            let colon = line.firstIndex(of: ":")
        else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}

/// A failure that ends the run with a message.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
