#!/usr/bin/env bash
# Builds fleetq-gateway offline from Debian's packages (golang-go, protobuf-compiler,
# golang-grpc-gateway, golang-github-grpc-ecosystem-grpc-gateway-dev, golang-goprotobuf-dev):
# protoc generates the Go messages and the v1 gateway from proto/fleetq/v1/fleetq.proto, then
# `go build` in GOPATH mode against /usr/share/gocode. No module is downloaded.
#
# usage: build.sh OUTPUT_BINARY GOOGLEAPIS_DIR
#   GOOGLEAPIS_DIR holds google/api/*.proto (the Makefile passes the pip package's).
set -euo pipefail
out=$1
googleapis=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT

# Debian's Go libraries are golang/protobuf 1.3 (no google.golang.org/protobuf), so the
# well-known types map to its ptypes packages; fleetq/v1 becomes the Go package fleetq/v1.
map="Mfleetq/v1/fleetq.proto=fleetq/v1"
map+=",Mgoogle/protobuf/struct.proto=github.com/golang/protobuf/ptypes/struct"
map+=",Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp"
map+=",Mgoogle/protobuf/descriptor.proto=github.com/golang/protobuf/protoc-gen-go/descriptor"
mkdir -p "$gopath/src/fleetq-gateway"
protoc -I "$repo/proto" -I "$googleapis" -I /usr/include \
	--go_out="plugins=grpc,$map:$gopath/src" \
	--grpc-gateway_out="logtostderr=true,$map:$gopath/src" \
	fleetq/v1/fleetq.proto
cp "$here/main.go" "$gopath/src/fleetq-gateway/"
cd "$gopath/src/fleetq-gateway"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= \
	GOCACHE="${GOCACHE:-$gopath/cache}" go build -o "$out" .
