#!/usr/bin/env bash
# Measures one change before and after, in one run: builds metadata, rating and movie at two revisions
# and has `bench-run ab` measure them in alternating rounds (A,B then B,A, ...), then appends a
# `### LABEL` entry with the table (medians and the ratios B/A) to the A/B section of BENCHMARKS.md.
#
#   scripts/bench-ab.sh BASE [CANDIDATE] [-- LABEL [bench-run ab flags...]]
#
#   scripts/bench-ab.sh main                              the working tree (uncommitted changes included) vs main
#   scripts/bench-ab.sh HEAD~1 HEAD -- "cache the channel"
#   scripts/bench-ab.sh HEAD~1 HEAD -- "smoke test" --rounds 2 --duration 2s --no-record
#
# BASE and CANDIDATE are git revisions; without CANDIDATE the candidate is the working tree as it is
# (built from this checkout; it is HEAD when there are no uncommitted changes). Each revision is checked
# out into a temporary worktree (target/ab/src-<hash>, removed afterwards) and built with one shared
# CARGO_TARGET_DIR (target/ab/target), so dependencies are compiled once; its binaries are kept in
# target/ab/bin-<hash> and reused by later runs. The load generator and the runner come from this
# checkout, the same for both sides. Flags after LABEL go to `bench-run ab` (see
# `target/release/bench-run ab --help`: --rounds, --duration, --warmup, --concurrency, --no-record, ...;
# also BENCH_AB_ROUNDS, BENCH_AB_DURATION, ...). BENCH_TIME_LIMIT (default 45m) bounds the whole run,
# builds included; on any exit every process it started is stopped and the worktrees are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
root=$PWD

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

revisions=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; break ;;
        -h | --help) usage 0 ;;
        -*) echo "unknown option $1 (flags for bench-run ab go after -- LABEL)" >&2; usage ;;
        *) revisions+=("$1"); shift ;;
    esac
done
label="${1:-}"
[ $# -gt 0 ] && shift
extra=("$@")
[ "${#revisions[@]}" -ge 1 ] && [ "${#revisions[@]}" -le 2 ] || usage

# Whole seconds of a duration written 90, 90s, 45m or 1h.
to_seconds() {
    case "$1" in
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo $(( ${1%s} )) ;;
        *) echo $(( $1 )) ;;
    esac
}
limit_s=$(to_seconds "${BENCH_TIME_LIMIT:-45m}")

# Sets left to the seconds left of BENCH_TIME_LIMIT; exits when none are.
time_left() {
    left=$(( limit_s - SECONDS ))
    if [ "$left" -le 0 ]; then
        echo "BENCH_TIME_LIMIT (${BENCH_TIME_LIMIT:-45m}) reached" >&2
        exit 124
    fi
}

# Runs a command within what is left of BENCH_TIME_LIMIT.
bounded() {
    time_left
    timeout --kill-after=10s "$left" "$@"
}

ab_dir=target/ab
shared_target="$root/$ab_dir/target"
mkdir -p "$ab_dir"
worktrees=()
runner=

cleanup() {
    if [ -n "$runner" ] && kill -0 -- "-$runner" 2>/dev/null; then
        kill -TERM -- "-$runner" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 -- "-$runner" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$runner" 2>/dev/null || true
    fi
    for worktree in "${worktrees[@]}"; do
        git worktree remove --force "$worktree" 2>/dev/null || rm -rf "$worktree"
    done
    git worktree prune
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds the three services in directory $1 into the shared target directory and copies them to $2
# (through a temporary directory, so a failed copy never leaves a bin directory to be reused).
build_into() {
    local src=$1 bin=$2
    (cd "$src" && CARGO_TARGET_DIR="$shared_target" bounded cargo build --release --locked -p metadata -p rating -p movie)
    rm -rf "$bin.partial" "$bin"
    mkdir -p "$bin.partial"
    cp "$shared_target"/release/{metadata,rating,movie} "$bin.partial/"
    mv "$bin.partial" "$bin"
}

# Sets bin and name for revision $1: its binaries, built unless target/ab/bin-<hash> exists.
build_revision() {
    local short src
    short=$(git rev-parse --short "$1^{commit}")
    name=$short
    bin="$ab_dir/bin-$short"
    if [ -x "$bin/metadata" ] && [ -x "$bin/rating" ] && [ -x "$bin/movie" ]; then
        echo "== $1 ($short): reusing $bin" >&2
        return
    fi
    echo "== $1 ($short): building into $bin" >&2
    src="$ab_dir/src-$short"
    git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
    git worktree prune
    git worktree add --detach --quiet "$src" "$short"
    worktrees+=("$src")
    build_into "$src" "$bin"
    git worktree remove --force "$src"
}

build_revision "${revisions[0]}"
a_bin=$bin a_name=$name
if [ "${#revisions[@]}" -eq 2 ]; then
    build_revision "${revisions[1]}"
    b_bin=$bin b_name=$name
    [ -n "$label" ] || label="$(git log -1 --format=%s "${revisions[1]}")"
elif [ -z "$(git status --porcelain --untracked-files=no)" ]; then
    echo "== the working tree has no uncommitted changes: the candidate is HEAD" >&2
    build_revision HEAD
    b_bin=$bin b_name=$name
    [ -n "$label" ] || label="$(git log -1 --format=%s HEAD)"
else
    # Uncommitted changes: built from this checkout every time (its bin directory is not reused).
    b_name="$(git rev-parse --short HEAD)+changes"
    b_bin="$ab_dir/bin-worktree"
    echo "== the working tree ($b_name): building into $b_bin" >&2
    build_into "$root" "$b_bin"
    [ -n "$label" ] || label="uncommitted changes on $(git rev-parse --short HEAD)"
fi

echo "== the load generator and the runner, from this checkout" >&2
bounded cargo build --release --locked -p bench

# The runner and everything it starts live in a session of their own (timeout leads it and, at the
# limit, signals the whole group), so the trap can stop all of them, and nothing else.
time_left
setsid timeout --kill-after=10s "$left" target/release/bench-run ab \
    --a-dir "$a_bin" --b-dir "$b_bin" --a-name "$a_name" --b-name "$b_name" --label "$label" "${extra[@]}" &
runner=$!
wait "$runner"
