#!/usr/bin/env bash
# Regenerates the Go code for api/proto. The generated files are committed;
# CI does not run protoc. Tools used for the committed code:
#
#   protoc              libprotoc 3.21.12 (Debian bookworm: apt-get install protobuf-compiler)
#   protoc-gen-go       v1.36.11  go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
#   protoc-gen-go-grpc  v1.5.1    go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
#
# Run from anywhere: bash api/proto/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  teeml/fl/v1/fl.proto teeml/kms/v1/kms.proto teeml/vfl/v1/bridge.proto teeml/psi/v1/psi.proto
