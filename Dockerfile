# syntax=docker/dockerfile:1
#
# One image for the whole suite: the services `metadata`, `rating` and
# `movie`, the `ratingingester` tool, `healthcheck` (a gRPC health probe
# for container healthchecks) and `mint-token` (bearer tokens for
# authenticated writes). The command picks the binary:
#
#   docker build -t movie-ratings .
#   docker run --rm -p 8081:8081 -e LISTEN_ADDR=0.0.0.0:8081 movie-ratings metadata
#
# Stages: cargo-chef plans and builds the dependencies in their own cached
# layer (rebuilt only when Cargo.toml/Cargo.lock change), then the workspace
# is built, and only the binaries are copied into a slim runtime that runs as
# a non-root user. protoc comes from the protoc-bin-vendored crate, so nothing
# is downloaded outside cargo. .dockerignore keeps build output, local state
# and secrets (.env) out of the build context.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
# The image needs no debug info (the workspace keeps line tables for local
# profiling); set before `cook` so the dependency layer matches the build.
ENV CARGO_PROFILE_RELEASE_DEBUG=none \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The same --bin list as the build below: cargo unifies the dependencies'
# features over what it builds, so a cook of anything else would compile
# them differently, and the build would compile them again.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        --bin metadata --bin rating --bin movie --bin ratingingester --bin healthcheck --bin mint-token
COPY . .
RUN cargo build --release --locked \
        --bin metadata --bin rating --bin movie --bin ratingingester --bin healthcheck --bin mint-token \
    && mkdir /out \
    && cp target/release/metadata target/release/rating target/release/movie \
          target/release/ratingingester target/release/healthcheck target/release/mint-token /out/

FROM debian:12.12-slim AS runtime
# libssl3 and CA certificates for the Consul client (HTTPS agents); zlib for
# librdkafka is already in the base image. Versions follow the pinned base
# image's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin movies
COPY --from=builder /out/ /usr/local/bin/
COPY ratingsdata.json /data/ratingsdata.json
WORKDIR /data
USER 10001:10001
# The services listen on 127.0.0.1 by default: in a container, set
# LISTEN_ADDR=0.0.0.0:<port> (docker-compose.yml does), and each instance
# advertises its container IP to Consul (see --advertise-host).
ENV RUST_LOG=info,consulrs=warn
CMD ["movie"]
