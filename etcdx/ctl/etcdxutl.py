"""``etcdxutl``: etcdutl's snapshot commands for etcdx data dirs.

    etcdxutl snapshot status SNAPSHOT [-w simple|table|json|fields]
    etcdxutl snapshot restore SNAPSHOT [--data-dir DIR] [--name NAME]
        [--initial-cluster NAME=URL,...] [--initial-cluster-token TOKEN]
        [--initial-advertise-peer-urls URL,...] [--skip-hash-check]
    etcdxutl version

Flags, defaults, outputs, errors and exit codes are etcdutl 3.5's. Both
commands read etcd snapshots and etcdx ones alike (the same format), so a
user moves a store from etcd to etcdx with one snapshot and back with another.
Failures print ``Error: ...`` on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence

from etcdx import __version__
from etcdx.bbolt import CorruptDatabaseError
from etcdx.server import logs
from etcdx.snapshot.integrity import IntegrityError
from etcdx.snapshot.layout import LayoutError
from etcdx.snapshot.status import Status, status

log = logging.getLogger("etcdxutl")

EXIT_ERROR = 1
EXIT_BAD_FEATURE = 4
EXIT_BAD_ARGS = 128

PROGRESS_MIN_BYTES = 4 << 20
"""Stores smaller than this restore without a progress bar (it would only flicker)."""


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as etcdutl does (``Error: ...``, exit 1)."""

    def error(self, message: str) -> None:
        raise CommandError(message)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="etcdxutl", description="etcdutl's snapshot commands for etcdx.")
    p.add_argument("-w", "--write-out", default="simple",
                   help="set the output format (fields, json, simple, table)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("version", help="Prints the version of etcdxutl")
    snap = sub.add_parser("snapshot", help="Manages etcd node snapshots")
    snap_sub = snap.add_subparsers(dest="snapshot_command", parser_class=_Parser)
    st = snap_sub.add_parser("status", help="Gets backend snapshot status of a given file")
    st.add_argument("files", nargs="*", metavar="filename")
    st.add_argument("-w", "--write-out", dest="write_out_local", default=None, help=argparse.SUPPRESS)
    rs = snap_sub.add_parser("restore", help="Restores an etcd member snapshot to an etcd directory")
    rs.add_argument("files", nargs="*", metavar="filename")
    rs.add_argument("--data-dir", default="", help="Path to the data directory (default: <name>.etcd)")
    rs.add_argument("--name", default="default", help="Human-readable name for this member")
    rs.add_argument("--initial-cluster", default="default=http://localhost:2380",
                    help="Initial cluster configuration for restore bootstrap")
    rs.add_argument("--initial-cluster-token", default="etcd-cluster",
                    help="Initial cluster token for the etcd cluster during restore bootstrap")
    rs.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380",
                    help="List of this member's peer URLs to advertise to the rest of the cluster")
    rs.add_argument("--skip-hash-check", nargs="?", const=True, default=False, type=_bool,
                    help="Ignore snapshot integrity hash value (required if copied from data directory)")
    rs.add_argument("-w", "--write-out", dest="write_out_local", default=None, help=argparse.SUPPRESS)
    return p


# -- status output ------------------------------------------------------------------

def humanize_bytes(n: int) -> str:
    """Sizes as etcd prints them (go-humanize's ``Bytes``: SI units, one decimal below 10)."""
    if n < 10:
        return f"{n} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    e = min(math.floor(math.log(n) / math.log(1000)), len(units) - 1)
    value = math.floor(n / 1000 ** e * 10 + 0.5) / 10
    return f"{value:.1f} {units[e]}" if value < 10 else f"{value:.0f} {units[e]}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An ASCII table as etcdctl draws it: centred headers, right-aligned cells."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    lines = [rule, "| " + " | ".join(centred(h, w) for h, w in zip(header, widths)) + " |", rule]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.append(rule)
    return "\n".join(lines)


def format_status(s: Status, write_out: str) -> str:
    if write_out == "simple":
        return f"{s.hash:x}, {s.revision}, {s.total_key}, {humanize_bytes(s.total_size)}"
    if write_out == "table":
        return _table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
                      [[f"{s.hash:x}", str(s.revision), str(s.total_key), humanize_bytes(s.total_size)]])
    if write_out == "json":
        return json.dumps(s.to_json(), separators=(",", ":"))
    if write_out == "fields":
        return (f'"Hash" : {s.hash}\n"Revision" : {s.revision}\n"Keys" : {s.total_key}\n'
                f'"Size" : {s.total_size}')
    if write_out == "protobuf":
        raise CommandError("protobuf not supported as output format", EXIT_BAD_FEATURE)
    raise CommandError("unsupported output format", EXIT_BAD_FEATURE)


# -- commands -----------------------------------------------------------------------

def _one_file(args: argparse.Namespace, command: str) -> str:
    if len(args.files) != 1:
        raise CommandError(f"snapshot {command} requires exactly one argument", EXIT_BAD_ARGS)
    return args.files[0]


def _os_error(err: OSError, path: str) -> CommandError:
    """An OS error in Go's words (``stat x.db: no such file or directory``)."""
    reason = (err.strerror or str(err)).lower()
    return CommandError(f"stat {path}: {reason}" if isinstance(err, FileNotFoundError) else f"{path}: {reason}")


def cmd_status(args: argparse.Namespace) -> None:
    path = _one_file(args, "status")
    write_out = args.write_out_local or args.write_out
    if write_out not in ("simple", "table", "json", "fields"):
        format_status(Status(0, 0, 0, 0), write_out)  # raises etcd's error for the format
    try:
        s = status(path)
    except OSError as err:
        raise _os_error(err, path) from None
    except CorruptDatabaseError as err:
        raise CommandError(str(err)) from None
    print(format_status(s, write_out))


def cmd_restore(args: argparse.Namespace) -> None:
    # Imported here: the restore path loads the server's bootstrap, status does not need it.
    from etcdx.snapshot.restore import RestoreError, check_data_dir, member_config, restore

    path = _one_file(args, "restore")
    _log_to_stderr()
    try:
        cfg = member_config(name=args.name, data_dir=args.data_dir, initial_cluster=args.initial_cluster,
                            initial_cluster_token=args.initial_cluster_token,
                            initial_advertise_peer_urls=[u.strip() for u in args.initial_advertise_peer_urls.split(",")
                                                         if u.strip()])
        check_data_dir(cfg.data_dir)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        paths = {"path": path, "wal-dir": os.path.join(cfg.data_dir, "member", "wal"), "data-dir": cfg.data_dir,
                 "snap-dir": os.path.join(cfg.data_dir, "member", "snap")}
        log.info("restoring snapshot", extra={"fields": paths})
        with _progress(path) as progress:
            restored = restore(path, cfg, skip_hash_check=args.skip_hash_check, progress=progress)
    except (RestoreError, IntegrityError, CorruptDatabaseError, LayoutError) as err:
        raise CommandError(str(err)) from None
    except OSError as err:
        raise _os_error(err, path) from None
    if restored.loaded.auth_enabled:
        log.warning("the snapshot has auth enabled; etcdx does not enforce auth yet, so its users and roles "
                    "are kept but not checked", extra={"fields": paths})
    log.info("restored snapshot", extra={"fields": {
        **paths, "member-id": f"{restored.member_id:x}", "cluster-id": f"{restored.cluster_id:x}",
        "revision": restored.loaded.revision, "compact-revision": restored.loaded.compact_revision}})


def _log_to_stderr() -> None:
    """etcdutl logs restores as JSON lines on stderr; so does this logger (and only it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.JSONFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class _progress:
    """A progress bar on a terminal for stores over a few MB; a no-op otherwise."""

    def __init__(self, path: str) -> None:
        self._bar = None
        size = os.path.getsize(path)
        if size >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=size, unit="B", unit_scale=True, desc="restoring", file=sys.stderr,
                             leave=False)

    def __enter__(self):
        return self._bar.update if self._bar is not None else None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None:
            if exc_type is None:  # the counts leave out page overhead: show the end as the end
                self._bar.update(self._bar.total - self._bar.n)
            self._bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "version":
            print(f"etcdxutl version: {__version__}\nAPI version: 3.5")
        elif args.command == "snapshot" and args.snapshot_command == "status":
            cmd_status(args)
        elif args.command == "snapshot" and args.snapshot_command == "restore":
            cmd_restore(args)
        else:
            parser.print_help()
            return EXIT_BAD_ARGS if args.command else 0
    except CommandError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 5
    return 0


if __name__ == "__main__":
    sys.exit(main())
