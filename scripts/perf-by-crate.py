#!/usr/bin/env python3
"""Where a process's CPU samples go, by Rust crate: a flat `perf` profile
summed by the crate of each sampled function.

    perf record -F 1999 -p PID -o movie.perf -- sleep 8   # while under load
    scripts/perf-by-crate.py movie.perf [TOP]

A sample counts for the function it was taken in, as the symbol table names
it: with the release profile's fat LTO most of a call's code is inlined into
few functions, so a crate's share is the share of the functions it owns
after inlining (h2's framing inlined into hyper's server counts for hyper).
A method of a trait counts for the type it is implemented on, a
`drop_in_place` for the type it drops. Kernel samples, libc's memory copies
and the allocator (mimalloc) are lines of their own.
"""
import collections
import re
import subprocess
import sys

LINE = re.compile(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)")


def crate_of(dso: str, kind: str, symbol: str) -> str:
    if kind == "k":
        return "kernel"
    if dso.startswith("libc"):
        return "libc: memcpy/memmove" if "mem" in symbol else "libc: other"
    if dso == "[vdso]":
        return "vdso (clock_gettime)"
    if symbol.startswith(("mi_", "_mi_")):
        return "mimalloc"
    while True:
        symbol = re.sub(r"^(?:[<&*\[( ]|mut |dyn |const )+", "", symbol)
        inner = re.match(r"core::ptr::drop_in_place<(.*)", symbol)
        if not inner:
            break
        symbol = inner.group(1)
    crate = re.split(r"::|<| |>|,", symbol)[0]
    return crate if re.fullmatch(r"[a-z_][a-z0-9_]*", crate) else "other"


def main() -> None:
    data, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    shares = collections.Counter()
    for line in report.splitlines():
        match = LINE.match(line)
        if match:
            percent, dso, kind, symbol = match.groups()
            shares[crate_of(dso, kind, symbol.strip())] += float(percent)
    total = sum(shares.values())
    print("| crate | share of samples |\n|---|---:|")
    for crate, percent in shares.most_common(top):
        print(f"| {crate} | {100 * percent / total:.1f} % |")
    rest = sum(percent for _, percent in shares.most_common()[top:])
    if rest:
        print(f"| the rest | {100 * rest / total:.1f} % |")


if __name__ == "__main__":
    main()
