#!/usr/bin/env bash
# Regenerate the Python code for etcdx's .proto files (run from anywhere).
# The generated files are committed so a clean clone works without protoc;
# tests/unit/test_proto_generated.py fails when they are out of date.
# Only rpc.proto defines services, so only it gets gRPC stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t plain < <(ls etcdx/pb/*.proto | grep -v '/rpc.proto$')
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. "${plain[@]}"
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. etcdx/pb/rpc.proto
