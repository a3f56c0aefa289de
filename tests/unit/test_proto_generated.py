"""The committed protobuf code must be what the committed .proto files generate."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICE_PROTOS = {"rpc.proto", "v3lock.proto", "v3election.proto", "health.proto"}  # as scripts/genproto.sh


def test_generated_code_matches_proto_files(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("grpc_tools")
    shutil.copytree(ROOT / "etcdx" / "pb", tmp_path / "etcdx" / "pb", ignore=shutil.ignore_patterns("*.py", "*.pyi"))
    protos = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "etcdx" / "pb").glob("*.proto"))
    base = [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=."]
    services = [p for p in protos if p.rsplit("/", 1)[-1] in SERVICE_PROTOS]
    subprocess.run(base + [p for p in protos if p not in services], cwd=tmp_path, check=True)
    subprocess.run(base + ["--grpc_python_out=."] + services, cwd=tmp_path, check=True)
    for generated in (tmp_path / "etcdx" / "pb").glob("*.py*"):
        committed = ROOT / "etcdx" / "pb" / generated.name
        assert committed.exists(), f"{generated.name} is generated but not committed"
        assert committed.read_text() == generated.read_text(), f"{generated.name} is stale: run scripts/genproto.sh"
