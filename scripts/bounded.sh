# shellcheck shell=bash
# Sourced by the scripts: run_bounded LIMIT COMMAND... runs COMMAND within LIMIT (timeout's syntax: 45m)
# in a session of its own (timeout leads it and, at the limit, signals the whole group), so that on any
# exit every process it started is stopped, and nothing else; returns COMMAND's exit status.
run_bounded() {
    local limit=$1
    shift
    setsid timeout --kill-after=10s "$limit" "$@" &
    bounded_leader=$!
    trap stop_bounded EXIT
    trap 'exit 130' INT TERM
    wait "$bounded_leader"
}

stop_bounded() {
    if kill -0 -- "-$bounded_leader" 2>/dev/null; then
        kill -TERM -- "-$bounded_leader" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 -- "-$bounded_leader" 2>/dev/null || return 0
            sleep 0.1
        done
        kill -KILL -- "-$bounded_leader" 2>/dev/null || true
    fi
}
