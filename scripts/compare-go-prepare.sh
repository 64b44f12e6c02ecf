#!/usr/bin/env bash
# Builds the book's Go suite (*Microservices with Go*, PacktPublishing/Microservices-with-Go, Chapter09)
# for scripts/compare-go.sh, offline: copies the book's packages the three services need from BOOK_SRC
# into DIR as GOPATH trees, adds our mains, registry and pooled connection helper (bench/go), and builds
# with Debian's Go packages (golang-go, golang-google-grpc-dev, golang-github-golang-protobuf-1-5-dev)
# in GOPATH mode, with no download.
#
#   scripts/compare-go-prepare.sh BOOK_SRC DIR
#
# BOOK_SRC is a checkout of the book's repository or its Chapter09/src. Writes DIR/bin/metadata,
# DIR/bin/rating, DIR/bin/movie (one pooled connection per target) and DIR/bin/movie-per-call (the
# book's gateways as published: a new connection for every call). The book's code stays in DIR, never
# in this repository. Changes made to the copies:
#   - in both trees, when the installed grpc-go predates credentials/insecure (1.33 on Debian 12),
#     `grpc.WithTransportCredentials(insecure.NewCredentials())` becomes `grpc.WithInsecure()`;
#   - in the pooled tree, internal/grpcutil is bench/go/pooled/grpcutil.go and the two gateways no
#     longer close the connection they are given after each call.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
[ $# -eq 2 ] || usage
book=$1
dir=$2
[ -d "$book/Chapter09/src" ] && book=$book/Chapter09/src
if [ ! -f "$book/api/movie.proto" ] || [ ! -d "$book/movie/internal/gateway" ]; then
    echo "$book is neither the book's repository nor its Chapter09/src" >&2
    exit 1
fi
gocode=${GO_DEBIAN_GOPATH:-/usr/share/gocode}
if [ ! -d "$gocode/src/google.golang.org/grpc" ] || [ ! -d "$gocode/src/google.golang.org/protobuf" ]; then
    echo "no grpc-go or protobuf-go under $gocode: apt-get install golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev" >&2
    exit 1
fi
command -v go >/dev/null 2>&1 || { echo "no go: apt-get install golang-go" >&2; exit 1; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
published=$dir/published/src/movieexample.com
pooled=$dir/pooled/src/movieexample.com
rm -rf "${dir:?}/published" "${dir:?}/pooled" "${dir:?}/bin"

# The book's packages behind the three gRPC services (no Consul, Kafka, MySQL or HTTP handlers).
packages=(
    gen
    internal/grpcutil
    pkg/discovery
    metadata/internal/controller/metadata metadata/internal/handler/grpc metadata/internal/repository
    metadata/internal/repository/memory metadata/pkg/model
    rating/internal/controller/rating rating/internal/handler/grpc rating/internal/repository
    rating/internal/repository/memory rating/pkg/model
    movie/internal/controller/movie movie/internal/gateway movie/internal/gateway/metadata/grpc
    movie/internal/gateway/rating/grpc movie/internal/handler/grpc movie/pkg/model
)
for package in "${packages[@]}"; do
    mkdir -p "$published/$package"
    find "$book/$package" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} "$published/$package/" \;
done

if [ ! -d "$gocode/src/google.golang.org/grpc/credentials/insecure" ]; then
    helper=$published/internal/grpcutil/grpcuttil.go
    sed -i -e 's/grpc\.WithTransportCredentials(insecure\.NewCredentials())/grpc.WithInsecure()/' \
        -e '/"google.golang.org\/grpc\/credentials\/insecure"/d' "$helper"
    if grep -q insecure "$helper"; then
        echo "could not replace credentials/insecure in $helper" >&2
        exit 1
    fi
fi

# Our own code: the mains and the fixed-address registry.
for service in metadata rating movie; do
    mkdir -p "$published/$service/comparison"
    cp "$root/bench/go/cmd/$service/main.go" "$published/$service/comparison/"
done
mkdir -p "$published/internal/staticregistry"
cp "$root/bench/go/staticregistry/registry.go" "$published/internal/staticregistry/"

# The pooled tree: the same, with a connection per target kept instead of one per call.
mkdir -p "$(dirname "$pooled")"
cp -r "$published" "$pooled"
rm "$pooled"/internal/grpcutil/*.go
cp "$root/bench/go/pooled/grpcutil.go" "$pooled/internal/grpcutil/"
for gateway in metadata rating; do
    file=$pooled/movie/internal/gateway/$gateway/grpc/$gateway.go
    grep -q '^[[:space:]]*defer conn\.Close()$' "$file" || { echo "no 'defer conn.Close()' in $file" >&2; exit 1; }
    sed -i '/^[[:space:]]*defer conn\.Close()$/d' "$file"
done

build() {
    local tree=$1 package=$2 output=$3
    (cd "$dir" && GO111MODULE=off GOPROXY=off GOFLAGS='' GOPATH="$tree:$gocode" go build -o "$output" "movieexample.com/$package")
}
mkdir -p "$dir/bin"
build "$dir/published" metadata/comparison "$dir/bin/metadata"
build "$dir/published" rating/comparison "$dir/bin/rating"
build "$dir/published" movie/comparison "$dir/bin/movie-per-call"
build "$dir/pooled" movie/comparison "$dir/bin/movie"
{
    go version
    echo "grpc-go $(sed -n 's/^const Version = "\(.*\)"$/\1/p' "$gocode/src/google.golang.org/grpc/version.go")"
} >"$dir/bin/toolchain.txt"
echo "built $dir/bin: $(cd "$dir/bin" && echo metadata rating movie movie-per-call)" >&2
cat "$dir/bin/toolchain.txt" >&2
