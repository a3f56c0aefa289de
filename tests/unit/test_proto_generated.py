"""The committed protobuf code must be what the committed .proto files generate."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto_files(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("grpc_tools")
    shutil.copytree(ROOT / "etcdx" / "pb", tmp_path / "etcdx" / "pb", ignore=shutil.ignore_patterns("*.py", "*.pyi"))
    protos = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "etcdx" / "pb").glob("*.proto"))
    base = [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=."]
    subprocess.run(base + [p for p in protos if not p.endswith("rpc.proto")], cwd=tmp_path, check=True)
    subprocess.run(base + ["--grpc_python_out=.", "etcdx/pb/rpc.proto"], cwd=tmp_path, check=True)
    for generated in (tmp_path / "etcdx" / "pb").glob("*.py*"):
        committed = ROOT / "etcdx" / "pb" / generated.name
        assert committed.exists(), f"{generated.name} is generated but not committed"
        assert committed.read_text() == generated.read_text(), f"{generated.name} is stale: run scripts/genproto.sh"
