"""``etcdx operator``: run a declared cluster on this host, show it, delete it.

    etcdx operator run -f cluster.yaml [--state-dir DIR] [--interval 2s] [--versions-dir DIR]
    etcdx operator status [-f cluster.yaml | --state-dir DIR] [-w table|json]
    etcdx operator delete [-f cluster.yaml | --state-dir DIR] [--timeout 2m]
    etcdx operator validate -f cluster.yaml
    etcdx operator manifests -f cluster.yaml [--namespace NS]    (the Kubernetes objects, as YAML)

``run`` keeps the cluster as the file says until it is stopped (SIGINT or
SIGTERM stop the operator, not the members) or the cluster is deleted; edit
the file to resize, upgrade or change the backup policy. The state directory
defaults to ``<name>.etcdx`` beside the spec file. ``delete`` asks the running
operator to delete the cluster and waits for it, or deletes it itself when no
operator runs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

import yaml

from etcdx.operator import spec as specs
from etcdx.operator.installations import Installations
from etcdx.operator.local import LocalDriver
from etcdx.operator.loop import Operator
from etcdx.operator.model import Phase
from etcdx.operator.status import table
from etcdx.server import logs

log = logging.getLogger("etcdx.operator")

EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _duration(text: str) -> float:
    try:
        return specs.parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 500ms, 2s, 1m)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etcdx operator", description="Declare an etcdx cluster; the operator makes it so.")
    sub = p.add_subparsers(dest="command", required=True)

    def where(sp: argparse.ArgumentParser, need_file: bool = False) -> None:
        sp.add_argument("-f", "--filename", required=need_file, help="the EtcdxCluster YAML file")
        sp.add_argument("--state-dir", help="where members' data, logs and status.json live "
                                            "(default: <name>.etcdx beside the spec file)")

    run = sub.add_parser("run", help="make the cluster as the spec says, and keep it so")
    where(run, need_file=True)
    run.add_argument("--interval", type=_duration, default=2.0, help="time between looks when idle (default 2s)")
    run.add_argument("--versions-dir", default=os.environ.get("ETCDX_OPERATOR_VERSIONS"),
                     help="installed etcdx versions: <dir>/<version>/bin/etcdx (env ETCDX_OPERATOR_VERSIONS)")
    run.add_argument("--unready-grace", type=_duration, default=30.0,
                     help="restart a running member that has not answered for this long (default 30s)")
    run.add_argument("--log-level", default="info")
    status = sub.add_parser("status", help="members, health, leader and backups")
    where(status)
    status.add_argument("-w", "--write-out", choices=["table", "json"], default="table")
    delete = sub.add_parser("delete", help="stop every member; keep or remove the data as the spec says")
    where(delete)
    delete.add_argument("--timeout", type=_duration, default=120.0)
    validate = sub.add_parser("validate", help="check a spec file and print what it means")
    validate.add_argument("-f", "--filename", required=True)
    manifests = sub.add_parser("manifests", help="print the Kubernetes objects for a spec (CRD with --crd)")
    manifests.add_argument("-f", "--filename")
    manifests.add_argument("--namespace", default="default")
    manifests.add_argument("--crd", action="store_true", help="print the CustomResourceDefinition and RBAC")
    return p


def _load(path: str) -> specs.ClusterSpec:
    try:
        return specs.load(path)
    except specs.SpecError as err:
        raise CommandError(str(err), EXIT_USAGE) from None
    except OSError as err:
        raise CommandError(f"{path}: {err.strerror or err}", EXIT_USAGE) from None


def _state_dir(args: argparse.Namespace) -> str:
    if args.state_dir:
        return os.path.abspath(args.state_dir)
    if not args.filename:
        raise CommandError("give -f FILE or --state-dir DIR", EXIT_USAGE)
    spec = _load(args.filename)
    return os.path.join(os.path.dirname(os.path.abspath(args.filename)), f"{spec.name}.etcdx")


class _Lock:
    """The state dir's operator lock (flock: released by the kernel when the holder dies)."""

    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "operator.lock")
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            with open(self.path, encoding="ascii") as f:
                return f.read().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _setup_logs(state_dir: str, level: str = "info") -> None:
    logs.setup(level, ["stderr", os.path.join(state_dir, "operator.log")])


def _saved_spec_path(state_dir: str) -> str:
    return os.path.join(state_dir, "spec.yaml")


def _operate(state_dir: str, load_spec, interval: float, versions_dir: str | None, unready_grace: float,
             stop: threading.Event) -> Phase:
    driver = LocalDriver(state_dir, Installations(versions_dir))
    operator = Operator(driver, load_spec, driver.write_status, unready_grace=unready_grace)
    try:
        turn = operator.run(stop, interval)
    finally:
        driver.close()
    return turn.decision.phase


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    spec = _load(args.filename)
    state_dir = _state_dir(args)
    lock = _Lock(state_dir)
    if not lock.try_acquire():
        raise CommandError(f"another operator (pid {lock.holder()}) runs the cluster in {state_dir}")
    try:
        _setup_logs(state_dir, args.log_level)
        driver = LocalDriver(state_dir)
        driver.cancel_deletion()  # a new run means the cluster is wanted again
        path = args.filename

        def load_spec() -> specs.ClusterSpec:
            loaded = specs.load(path)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            with open(_saved_spec_path(state_dir) + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(_saved_spec_path(state_dir) + ".tmp", _saved_spec_path(state_dir))
            return loaded

        log.info("operator started", extra={"fields": {"cluster": spec.name, "state-dir": state_dir,
                                                       "pid": os.getpid()}})
        phase = _operate(state_dir, load_spec, args.interval, args.versions_dir, args.unready_grace,
                         _stop_on_signals())
        log.info("operator stopped" if phase is not Phase.DELETED else "cluster deleted; operator done",
                 extra={"fields": {"phase": phase.value}})
    finally:
        lock.release()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    status = LocalDriver(state_dir).read_status()
    if status is None:
        raise CommandError(f"no status in {state_dir} (has the operator run?)")
    print(json.dumps(status, indent=1) if args.write_out == "json" else table(status))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if not os.path.isdir(state_dir):
        raise CommandError(f"no cluster state in {state_dir}")
    driver = LocalDriver(state_dir)
    saved = _saved_spec_path(state_dir)
    spec_file = args.filename or saved
    if not os.path.exists(spec_file):
        raise CommandError(f"no spec: give -f FILE ({saved} is missing)", EXIT_USAGE)
    lock = _Lock(state_dir)
    driver.request_deletion()
    deadline = time.monotonic() + args.timeout
    if lock.try_acquire():  # no operator runs: delete it here
        try:
            _setup_logs(state_dir)
            stop = threading.Event()
            timer = threading.Timer(args.timeout, stop.set)
            timer.start()
            try:
                phase = _operate(state_dir, lambda: specs.load(spec_file), 0.2, None, 30.0, stop)
            finally:
                timer.cancel()
        finally:
            lock.release()
        if phase is not Phase.DELETED:
            raise CommandError(f"the cluster was not deleted within {args.timeout:g}s (phase {phase.value})")
        print(f"cluster in {state_dir} deleted")
        return 0
    while time.monotonic() < deadline:  # the running operator deletes it; wait for it to say so
        status = driver.read_status() or {}
        if status.get("phase") == Phase.DELETED.value:
            print(f"cluster in {state_dir} deleted")
            return 0
        time.sleep(0.2)
    raise CommandError(f"the operator (pid {lock.holder()}) did not delete the cluster within {args.timeout:g}s")


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _load(args.filename)
    print(f"{args.filename}: valid EtcdxCluster {spec.name!r}: {spec.size} member(s) of etcdx {spec.version}")
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    from etcdx.operator.kube import manifests

    docs: list[dict] = []
    if args.crd:
        docs += manifests.operator_objects(args.namespace)
    if args.filename:
        spec = _load(args.filename)
        docs += manifests.cluster_objects(spec, args.namespace)
    if not docs:
        raise CommandError("give -f FILE and/or --crd", EXIT_USAGE)
    print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    return 0


COMMANDS = {"run": cmd_run, "status": cmd_status, "delete": cmd_delete, "validate": cmd_validate,
            "manifests": cmd_manifests}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CommandError as err:
        print(f"etcdx operator: {err}", file=sys.stderr)
        return err.code
