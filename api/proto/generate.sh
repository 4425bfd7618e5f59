#!/usr/bin/env bash
# Regenerates the Go code for api/proto. The generated files are committed;
# CI (.ci/run) runs this script and fails if the result differs from them.
# Tools (pinned; their versions are also written into the *.pb.go headers):
#
#   protoc              libprotoc 3.21.12 (Debian bookworm: apt-get install protobuf-compiler)
#   protoc-gen-go       v1.36.11  (google.golang.org/protobuf/cmd/protoc-gen-go)
#   protoc-gen-go-grpc  v1.5.1    (google.golang.org/grpc/cmd/protoc-gen-go-grpc)
#
# The script refuses another protoc version, and installs the two plugins at
# the pinned versions into a temporary GOBIN (go install pkg@version: the
# module proxy or cache; go.mod is not touched), so whatever is on PATH
# cannot change the output.
#
# Run from anywhere: bash api/proto/generate.sh
set -euo pipefail
cd "$(dirname "$0")"

protoc_version=3.21.12
protoc_gen_go_version=v1.36.11
protoc_gen_go_grpc_version=v1.5.1

command -v protoc >/dev/null || { echo "generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
have=$(protoc --version)
if [ "$have" != "libprotoc $protoc_version" ]; then
	echo "generate.sh: $have, want libprotoc $protoc_version (the version the committed code was generated with)" >&2
	exit 1
fi

gobin=$(mktemp -d "${TMPDIR:-/tmp}/teeml-protoc-gen.XXXXXX")
trap 'rm -rf "$gobin"' EXIT
GOBIN="$gobin" GOFLAGS=-buildvcs=false go install "google.golang.org/protobuf/cmd/protoc-gen-go@$protoc_gen_go_version"
GOBIN="$gobin" GOFLAGS=-buildvcs=false go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$protoc_gen_go_grpc_version"

# Every .proto under teeml/, so a new file cannot be left out.
mapfile -t protos < <(find teeml -name '*.proto' | LC_ALL=C sort)
PATH="$gobin:$PATH" protoc -I . \
  --plugin=protoc-gen-go="$gobin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$gobin/protoc-gen-go-grpc" \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  "${protos[@]}"
