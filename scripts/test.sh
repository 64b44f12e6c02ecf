#!/usr/bin/env bash
# Runs every test of the suite: unit tests beside the code and the
# end-to-end tests in tests/, which start the real binaries.
# Installs what the tests need first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh --for-tests
source scripts/env.sh

echo "==> checking formatting (cargo fmt --check)" >&2
cargo fmt --all --check
echo "==> linting (cargo clippy, warnings are errors)" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> building the service binaries" >&2
cargo build --locked --workspace --bins
echo "==> running the tests" >&2
cargo nextest run --locked --workspace --no-fail-fast "$@"
