"""Who a profile's cost belongs to: the library or sidecast module whose code ran, with the
Swift runtime, libc and the standard library's specializations charged to the code that called
them. A retain, a malloc or a Dictionary lookup is work its caller asked for, so "how much of a
message does SwiftNIO take" has to count the runtime calls SwiftNIO makes.

Used by scripts/callgrind/diff.py (--owners) and scripts/perf-bench.sh.
"""

import collections
import re

MANGLED_MODULE = re.compile(r"\$s(\d+)")
RUNTIME_OBJECTS = ("libswiftCore", "libc.so", "libm.so", "ld-linux", "libdispatch", "[vdso]", "libstdc++")

# What each owner is, for the summary: sidecast's own modules are its Sources/ folders.
SIDECAST_MODULES = {
    "Adapter", "Bridge", "EngineIO", "Redis", "SidecastJSON", "SidecastServer", "SocketIO", "sidecast",
}


def module_of(obj, function):
    """The Swift module a mangled name belongs to, else the shared object's file name. Names
    without a module (`$ss…`, `$sS…` standard-library specializations, `__swift_…` helpers) are
    marked as runtime: they run on behalf of whoever called them."""
    function = function or ""
    match = MANGLED_MODULE.match(function)
    if match:
        length = int(match.group(1))
        start = match.end()
        return function[start : start + length]
    if function.startswith(("$ss", "$sS", "__swift_", "swift_")):
        return None
    name = (obj or "?").rsplit("/", 1)[-1]
    if name.startswith(RUNTIME_OBJECTS):
        return None
    return name


def group_of(module):
    if module == "[kernel]":
        return "kernel"
    if module.startswith(("NIO", "_NIO")):
        return "SwiftNIO"
    if module.startswith("libjansson"):
        return "jansson"
    if module in SIDECAST_MODULES:
        return "sidecast"
    return "other"


def print_shares(costs, unit_count, unit_name, what):
    """Prints `costs` (owner -> amount for all extra units) per unit and as a share, by group
    and by module."""
    total = sum(costs.values())
    if total <= 0:
        print("no cost to split")
        return
    places = 2 if total / unit_count < 1000 else 0
    groups = collections.Counter()
    for module, value in costs.items():
        groups[group_of(module)] += value
    print(f"{what} per {unit_name}, by owner (runtime calls charged to their caller):")
    for group, value in groups.most_common():
        print(f"  {value / unit_count:10,.{places}f}  {100 * value / total:5.1f} %  {group}")
    print("  by module:")
    for module, value in costs.most_common(16):
        if value / total >= 0.001:
            print(f"  {value / unit_count:10,.{places}f}  {100 * value / total:5.1f} %    {module}")


def perf_owner_counts(script_output):
    """Samples by owner from `perf script -F ip,sym,dso` output of a call-graph recording: each
    sample goes to its innermost frame with a module; samples taken in the kernel to "[kernel]"."""
    counts = collections.Counter()
    frames = []

    def close():
        if not frames:
            return
        obj, function = frames[0]
        if obj.startswith("[kernel"):
            counts["[kernel]"] += 1
        else:
            counts[next((m for m in (module_of(o, f) for o, f in frames) if m), "runtime (no caller)")] += 1
        frames.clear()

    # The object is the last parenthesised group: demangled C++ names hold parentheses too.
    frame = re.compile(r"\s*[0-9a-f]+\s+(.*)\s+\(([^()]*)\)$")
    for line in script_output:
        match = frame.match(line)
        if match:
            frames.append((match.group(2), match.group(1)))
        elif not line.strip():
            close()
    close()
    return counts


def strace_counts(path):
    """Calls per system call from an `strace -c` summary."""
    counts = collections.Counter()
    with open(path) as lines:
        for line in lines:
            fields = line.split()
            if len(fields) >= 5 and fields[-1].isidentifier() and fields[3].isdigit() and fields[-1] != "total":
                counts[fields[-1]] = int(fields[3])
    return counts


def main():
    """scripts/perf-bench.sh's arithmetic: owners.py perf|strace LONG SHORT UNITS UNIT_NAME [HZ]."""
    import subprocess
    import sys

    mode, long_path, short_path, units, unit_name = sys.argv[1:6]
    units = float(units)
    if mode == "strace":
        calls = strace_counts(long_path)
        calls.subtract(strace_counts(short_path))
        print(f"system calls per {unit_name}: {sum(calls.values()) / units:.2f}")
        for name, value in calls.most_common(8):
            if value / units >= 0.01:
                print(f"  {value / units:8.2f}  {name}")
        return
    hertz = float(sys.argv[6])
    costs = collections.Counter()
    for path, sign in ((long_path, 1), (short_path, -1)):
        script = subprocess.run(["perf", "script", "-F", "ip,sym,dso", "-i", path],
                                check=True, capture_output=True, text=True).stdout.splitlines()
        for owner, count in perf_owner_counts(script).items():
            costs[owner] += sign * count * 1e6 / hertz
    user = collections.Counter({k: v for k, v in costs.items() if k != "[kernel]"})
    print(f"CPU per {unit_name}: {sum(costs.values()) / units:,.2f} µs "
          f"(user {sum(user.values()) / units:,.2f}, kernel {costs['[kernel]'] / units:,.2f}), from samples")
    print_shares(user, units, unit_name, "user µs")


if __name__ == "__main__":
    main()
