import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many CPUs this process may run on: what `--threads 0` stands for.
///
/// Two limits apply, and the smaller wins: the affinity mask (`taskset`, systemd's
/// `CPUAffinity=`, a container's cpuset as the scheduler applies it) and the cgroup's CPU quota
/// (`cpu.max`, Kubernetes' CPU limit), rounded up as a fractional CPU still gets one loop.
/// NIO's `System.coreCount` reads the cgroup (quota, else cpuset, else the online CPUs); the
/// affinity mask comes from `/proc/self/status`, because Swift's Glibc module does not import
/// `sched_getaffinity` and the kernel prints the same mask there.
public struct CPUAllowance: Sendable, Equatable {
    /// CPUs in the affinity mask; nil where the system does not say (not Linux).
    public var affinity: Int?
    /// NIO's count: the cgroup CPU quota rounded up, else the cgroup's cpuset, else the online CPUs.
    public var cgroup: Int

    public init(affinity: Int?, cgroup: Int) {
        self.affinity = affinity
        self.cgroup = cgroup
    }

    /// The CPUs this process may use, at least one.
    public var count: Int { max(1, min(affinity ?? cgroup, cgroup)) }

    /// How `count` was arrived at, for `--print-config` and errors.
    public var derivation: String {
        let cpus = count == 1 ? "1 CPU" : "\(count) CPUs"
        guard let affinity else { return "\(cpus) (NIO's count)" }
        return "\(cpus) this process may run on (affinity mask \(affinity), cgroup quota or CPUs \(cgroup))"
    }

    /// The allowance of the running process.
    public static func current() -> CPUAllowance {
        CPUAllowance(affinity: affinityCount(), cgroup: System.coreCount)
    }

    private static func affinityCount() -> Int? {
        #if os(Linux)
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            guard text.hasPrefix("Cpus_allowed_list:") else { continue }
            return cpuCount(list: text.dropFirst("Cpus_allowed_list:".count))
        }
        return nil
        #else
        return nil
        #endif
    }

    /// The number of CPUs in a kernel CPU list such as `0-3,8,10-11`; nil if it is not one.
    static func cpuCount(list: Substring) -> Int? {
        var total = 0
        for item in list.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
            let bounds = item.split(separator: "-", maxSplits: 1)
            guard let first = Int(bounds[0]) else { return nil }
            let last = bounds.count == 2 ? Int(bounds[1]) : first
            guard let last, last >= first else { return nil }
            total += last - first + 1
        }
        return total > 0 ? total : nil
    }
}
