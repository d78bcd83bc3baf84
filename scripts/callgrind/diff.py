"""Instructions per unit of work from two callgrind profiles of the same scenario.

The long run and the short run pay the same start, connects and shutdown; what the long run
executed beyond the short one is the work of the extra messages or deliveries, so dividing the
difference by their number gives instructions per unit without marking a window inside the run.

    diff.py LONG SHORT UNITS [--top N] [--callees SUBSTRING] [--owners]

Prints the total, the split by shared object, and with --top the N functions with the most
self instructions per unit; with --callees, what the functions whose name contains SUBSTRING
spend in each function they call (inclusive), per unit; with --owners, the split by the module
whose code asked for the work (scripts/owners.py).
"""

import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from owners import module_of, print_shares  # noqa: E402

NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")


class Profile:
    """Self cost per (object, function) and inclusive cost per (caller, callee) of one file."""

    def __init__(self, path):
        self.self_cost = collections.Counter()
        self.call_cost = collections.Counter()
        names = {}

        def resolve(kind, text):
            match = NAME.match(text)
            if not match:
                return text
            key = (kind, match.group(1))
            if match.group(2):
                names[key] = match.group(2)
            return names.get(key, text)

        obj = function = callee = None
        after_calls = False
        with open(path) as lines:
            for line in lines:
                line = line.rstrip("\n")
                if line.startswith("ob="):
                    obj = resolve("ob", line[3:])
                elif line.startswith("cob="):
                    resolve("ob", line[4:])
                elif line.startswith("fn="):
                    function = resolve("fn", line[3:])
                elif line.startswith("cfn="):
                    callee = resolve("fn", line[4:])
                elif line.startswith("calls="):
                    after_calls = True
                elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
                    fields = line.split()
                    if len(fields) >= 2:
                        cost = int(fields[1])
                        if after_calls:
                            self.call_cost[(function, callee)] += cost
                        else:
                            self.self_cost[(obj, function)] += cost
                    after_calls = False

    @property
    def total(self):
        return sum(self.self_cost.values())


def owner_costs(profile, rounds=60):
    """Self instructions by owner. A runtime function's (no module of its own) are shared among
    its callers in proportion to what each call cost, up the call graph until a caller has a
    module: callgrind keeps caller-callee pairs, not whole stacks, so this is the usual
    approximation, exact where a runtime function has one kind of caller. The shares are the
    solution of a linear system (runtime functions call each other, in cycles too), found by
    repeated substitution; what no round reaches stays "runtime (unattributed)"."""
    modules, own = {}, collections.Counter()
    for (obj, function), value in profile.self_cost.items():
        modules[function] = module_of(obj, function)
        own[function] += value
    callers = collections.defaultdict(list)
    for (caller, callee), value in profile.call_cost.items():
        if caller != callee and value > 0 and not modules.get(callee):
            callers[callee].append((caller, value))
    runtime = [function for function in own if not modules.get(function)]
    shares = {function: {} for function in runtime}
    for _ in range(rounds):
        updated = {}
        for function in runtime:
            total = sum(value for _, value in callers[function])
            result = collections.Counter()
            for caller, value in callers[function]:
                module = modules.get(caller)
                for owner, fraction in ({module: 1.0} if module else shares.get(caller, {})).items():
                    result[owner] += fraction * value / total
            updated[function] = result
        shares = updated

    costs = collections.Counter()
    for function, value in own.items():
        if modules.get(function):
            costs[modules[function]] += value
            continue
        share = shares[function]
        for owner, fraction in share.items():
            costs[owner] += value * fraction
        costs["runtime (unattributed)"] += value * (1 - sum(share.values()))
    return costs


def per_unit(long, short, units):
    return {key: (value - short.get(key, 0)) / units for key, value in long.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("long")
    parser.add_argument("short")
    parser.add_argument("units", type=float)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--callees")
    parser.add_argument("--owners", action="store_true")
    args = parser.parse_args()
    long, short = Profile(args.long), Profile(args.short)
    print(f"instructions per unit: {(long.total - short.total) / args.units:,.0f}")
    by_object = collections.Counter()
    costs = per_unit(long.self_cost, short.self_cost, args.units)
    for (obj, _), value in costs.items():
        by_object[(obj or "?").rsplit("/", 1)[-1]] += value
    for obj, value in by_object.most_common(6):
        print(f"  {value:10,.0f}  {obj}")
    if args.top:
        print(f"functions, self instructions per unit:")
        for (obj, function), value in sorted(costs.items(), key=lambda item: -item[1])[: args.top]:
            print(f"  {value:10,.0f}  {(obj or '?').rsplit('/', 1)[-1][:22]:22}  {function[:150]}")
    if args.owners:
        extra = owner_costs(long)
        extra.subtract(owner_costs(short))
        print_shares(extra, args.units, "unit", "instructions")
    if args.callees:
        calls = per_unit(long.call_cost, short.call_cost, args.units)
        print(f"callees of *{args.callees}*, inclusive instructions per unit:")
        for (caller, callee), value in sorted(calls.items(), key=lambda item: -item[1]):
            if args.callees in (caller or "") and abs(value) >= 1:
                print(f"  {value:10,.0f}  {callee[:150]}")


if __name__ == "__main__":
    main()
