#!/usr/bin/env bash
# Regenerate the Python code for etcdx's .proto files (run from anywhere).
# The generated files are committed so a clean clone works without protoc;
# tests/unit/test_proto_generated.py fails when they are out of date.
# The files that define services (SERVICES) also get gRPC stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES='/(rpc|v3lock|v3election|health)\.proto$'
mapfile -t plain < <(ls etcdx/pb/*.proto | grep -Ev "$SERVICES")
mapfile -t services < <(ls etcdx/pb/*.proto | grep -E "$SERVICES")
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. "${plain[@]}"
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. "${services[@]}"
