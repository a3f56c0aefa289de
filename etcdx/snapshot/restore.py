"""``snapshot restore``: a new etcdx data dir, preloaded from an etcd or etcdx snapshot.

As etcd's restore does, the restored member belongs to a *new* cluster: the
member and cluster ids are derived from ``--initial-cluster`` and
``--initial-cluster-token`` (so every member restored with the same flags
agrees on them), the old membership is dropped, and the raft log starts
afresh. The data dir is exactly what a new member bootstraps (see
``etcdx.server.bootstrap``) plus the snapshot's keys, leases, alarms and
compaction state, so ``etcdx`` started on it restarts from its WAL.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from etcdx.backend import Backend
from etcdx.bbolt import Reader
from etcdx.server import config
from etcdx.server.bootstrap import boot
from etcdx.snapshot import integrity
from etcdx.snapshot.load import Loaded, Progress, load


class RestoreError(ValueError):
    """The restore cannot go ahead with these flags (etcd's messages where etcd has one)."""


@dataclass
class Restored:
    member_id: int
    cluster_id: int
    data_dir: str
    loaded: Loaded


def member_config(*, name: str, data_dir: str, initial_cluster: str, initial_cluster_token: str,
                  initial_advertise_peer_urls: list[str]) -> config.Config:
    """The member's configuration, checked as etcd's ``VerifyBootstrap`` checks it."""
    argv = ["--name", name, "--initial-cluster", initial_cluster, "--initial-cluster-token",
            initial_cluster_token, "--initial-advertise-peer-urls", ",".join(initial_advertise_peer_urls)]
    if data_dir:
        argv += ["--data-dir", data_dir]
    try:
        members = config.Config(name=name, initial_cluster=initial_cluster).initial_cluster_members()
        if name not in members:
            raise RestoreError(f'couldn\'t find local name "{name}" in the initial cluster configuration')
        cfg, _ = config.load(argv, environ={})
    except config.ConfigError as err:
        raise RestoreError(str(err)) from None
    seen: set[str] = set()
    for urls in members.values():
        for url in urls:
            if url in seen:
                raise RestoreError(f"initial cluster {initial_cluster} has duplicate url")
            seen.add(url)
    mine, advertised = sorted(members[name]), sorted(cfg.initial_advertise_peer_urls)
    if mine != advertised:
        raise RestoreError(
            f"--initial-cluster has {name}={','.join(mine)} but missing from "
            f"--initial-advertise-peer-urls={','.join(advertised)} "
            f'(resolved urls: "{",".join(advertised)}" != "{",".join(mine)}")')
    return cfg


def check_data_dir(data_dir: str) -> None:
    """A restore never writes into a data dir that holds anything."""
    if os.path.exists(data_dir) and (not os.path.isdir(data_dir) or os.listdir(data_dir)):
        raise RestoreError(f'data-dir "{data_dir}" not empty or could not be read')


def restore(snapshot_path: str | os.PathLike, cfg: config.Config, *, skip_hash_check: bool = False,
            progress: Progress | None = None) -> Restored:
    """Make ``cfg.data_dir`` a member of a new cluster holding the snapshot's data.

    The data dir must not exist or be empty; on failure whatever was created
    is removed again. Raises ``RestoreError``/``IntegrityError`` for bad flags
    or a bad hash, ``CorruptDatabaseError``/``LayoutError`` for a file that
    is not an etcd database, ``OSError`` for I/O problems.
    """
    data_dir = cfg.data_dir
    check_data_dir(data_dir)
    integrity.verify(snapshot_path, skip_hash_check)
    created = not os.path.exists(data_dir)
    member_dir = os.path.join(data_dir, "member")
    try:
        os.makedirs(os.path.join(member_dir, "snap"))
        with Reader(snapshot_path) as reader:
            backend = Backend(os.path.join(member_dir, "snap", "db"))
            try:
                loaded = load(reader, backend, members=False, progress=progress)
                state = boot(cfg, backend, os.path.join(member_dir, "wal"))
                state.wal.close()
            finally:
                backend.close()
    except BaseException:
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            shutil.rmtree(member_dir, ignore_errors=True)
        raise
    return Restored(state.member_id, state.cluster_id, data_dir, loaded)
