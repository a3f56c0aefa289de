"""Clusters of real members on loopback, optionally behind fault-injecting proxies.

    with Cluster("etcd", tmp_path, size=3, proxied=True) as c:
        c.start()                          # spawn all at once, wait until each answers a Range
        leader = c.leader()                # the Member every live member agrees leads
        c.net.partition([leader], [m for m in c.members if m is not leader])
        c.net.heal()
        c.isolate(leader); c.heal()        # the same, for one member
        m4 = c.add_member("m4")            # MemberAdd, then start with --initial-cluster-state existing
        c.remove_member(m4)                # MemberRemove, then stop
        client = c.client()                # an etcdx.client.Client with every member's endpoint

Members are `procs.Member`s (named m1..mN, data and logs under ``base_dir``)
with etcd's clustering flags. Each listens for peers on its own port; with
``proxied`` each also gets an inbound `FaultProxy` and advertises the proxy's
URL (in --initial-advertise-peer-urls and every --initial-cluster), so all
traffic other members send it crosses `proxy(m)`. Member ids are learned from
the members themselves (Maintenance.Status, MemberAdd) and kept across
restarts, so rules keep naming the right member after a kill -9.

A member is ready once it answers a serializable Range: a restarted member
cut off from a quorum may never serve linearizable reads, yet it is up.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

import grpc

from etcdx.pb import rpc_pb2

from .faultproxy import FaultNetwork, FaultProxy
from .procs import ETCD_BIN, ETCDX_MODULE, START_TIMEOUT, Member

if TYPE_CHECKING:
    from etcdx.client import AsyncClient, Client

    from .tls import TLSFiles

_tokens = itertools.count(1)
# "unhealthy cluster", "leader changed", "request timed out", no leader: retried.
_TRANSIENT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class ClusterMember(Member):
    """A `Member` with clustering flags; it may advertise a proxy's peer URL."""

    def __init__(
        self,
        kind: str,
        base_dir: os.PathLike | str,
        name: str,
        token: str,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__(kind, base_dir, name=name, extra_args=extra_args, env=env, tls=tls)
        self.token = token
        self.peer_proxy: FaultProxy | None = None
        self.initial_cluster = ""
        self.initial_cluster_state = "new"
        self.member_id: int | None = None

    @property
    def advertise_peer_url(self) -> str:
        """The peer URL other members dial: the proxy's when there is one."""
        return self.peer_proxy.url if self.peer_proxy is not None else self.peer_url

    def command(self) -> list[str]:
        flags = [
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.advertise_peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.advertise_peer_url}",
            "--initial-cluster-state", self.initial_cluster_state,
            "--initial-cluster-token", self.token,
            *self.tls_flags(),
            *self.extra_args,
        ]  # fmt: skip
        if self.kind == "etcd":
            return [ETCD_BIN, *flags]
        return [sys.executable, "-m", ETCDX_MODULE, *flags]

    ready_probe_serializable = True  # ready once it serves, with or without a quorum

    def status(self, timeout: float = 1.0) -> rpc_pb2.StatusResponse:
        return self.maintenance.Status(rpc_pb2.StatusRequest(), timeout=timeout)


class Cluster:
    """N members of one kind forming one cluster; see the module docstring."""

    def __init__(
        self,
        kind: str,
        base_dir: os.PathLike | str,
        size: int = 3,
        extra_args: Sequence[str] = (),
        proxied: bool = False,
        env: dict[str, str] | None = None,
        token: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one member")
        self.kind = kind
        self.base_dir = pathlib.Path(base_dir)
        self.extra_args = list(extra_args)
        self.proxied = proxied
        self.env = env
        self.tls = tls
        self.token = token or f"etcdx-test-{os.getpid()}-{next(_tokens)}"
        self.members: list[ClusterMember] = [self._new_member(f"m{i}") for i in range(1, size + 1)]
        self._retired: list[ClusterMember] = []
        self.net: FaultNetwork | None = (
            FaultNetwork(lambda: [m.peer_proxy for m in self.members if m.peer_proxy], self._member_id_of)
            if proxied
            else None
        )

    def _new_member(self, name: str) -> ClusterMember:
        m = ClusterMember(self.kind, self.base_dir, name, self.token, self.extra_args, self.env, self.tls)
        if self.proxied:
            m.peer_proxy = FaultProxy(m.peer_port, name=name).start()
        return m

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Spawn every member at once (a new cluster), wait until each serves, learn their ids."""
        spec = ",".join(f"{m.name}={m.advertise_peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster, m.initial_cluster_state = spec, "new"
        try:
            for m in self.members:
                m.start(wait=False)
            for m in self.members:
                m.wait_ready(timeout)
            deadline = time.monotonic() + timeout
            for m in self.members:
                self._learn_id(m, deadline)
        except BaseException:
            for m in self.members:
                m.kill()
            raise
        return self

    def _learn_id(self, m: ClusterMember, deadline: float) -> None:
        while True:
            try:
                m.member_id = m.status().header.member_id
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if m.peer_proxy is not None:
            m.peer_proxy.member_id = m.member_id

    def close(self) -> None:
        """Stop every member this cluster ever had and its proxy. Idempotent."""
        for m in [*self.members, *self._retired]:
            m.close()
            if m.peer_proxy is not None:
                m.peer_proxy.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups ------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def client(self, **options: Any) -> Client:
        """An `etcdx.client.Client` over every member (TLS set up when the cluster has it)."""
        from etcdx.client import Client

        if self.tls is not None:
            options.setdefault("tls", self.tls.client_tls())
        return Client(self.endpoints, **options)

    def async_client(self, **options: Any) -> AsyncClient:
        """An `etcdx.client.AsyncClient` over every member (create it inside its event loop)."""
        from etcdx.client import AsyncClient

        if self.tls is not None:
            options.setdefault("tls", self.tls.client_tls())
        return AsyncClient(self.endpoints, **options)

    # -- faults (partitions need ``proxied=True``) ------------------------------------------
    def _network(self) -> FaultNetwork:
        if self.net is None:
            raise RuntimeError("partitions need a cluster made with proxied=True")
        return self.net

    def isolate(self, member: Member | str | int) -> None:
        """Cut ``member`` off from every other member (clients still reach it)."""
        self._network().isolate(member)

    def partition(self, group_a: Iterable[Member | str | int], group_b: Iterable[Member | str | int]) -> None:
        """No peer traffic between the two groups."""
        self._network().partition(group_a, group_b)

    def heal(self) -> None:
        """Undo every partition and isolation."""
        self._network().heal()

    def member_by_id(self, member_id: int) -> ClusterMember | None:
        return next((m for m in self.members if m.member_id == member_id), None)

    def member_by_name(self, name: str) -> ClusterMember | None:
        return next((m for m in self.members if m.name == name), None)

    def proxy(self, m: Member) -> FaultProxy | None:
        return getattr(m, "peer_proxy", None)

    def _member_id_of(self, ref: Any) -> int:
        if isinstance(ref, int):
            return ref
        if isinstance(ref, str):
            found = self.member_by_name(ref)
            if found is None:
                raise KeyError(f"no member named {ref!r}")
            ref = found
        if getattr(ref, "member_id", None) is None:
            raise ValueError(f"{ref!r} has no known member id (not started?)")
        return ref.member_id

    def leader(self, timeout: float = 10.0) -> ClusterMember:
        """The member that every running member reporting one agrees is leader.

        Needs a quorum of members to answer and all of them to name the same
        leader, which must be one of ours and running.
        """
        deadline = time.monotonic() + timeout
        last = "no member answered"
        quorum = len(self.members) // 2 + 1
        while True:
            views: dict[str, int] = {}
            for m in self.members:
                if not m.is_running():
                    continue
                try:
                    views[m.name] = m.status(timeout=0.5).leader
                except grpc.RpcError as e:
                    views[m.name] = -1
                    last = f"{m.name}: {e.code().name}"
            named = {lid for lid in views.values() if lid > 0}
            answered = sum(1 for lid in views.values() if lid >= 0)
            if len(named) == 1 and answered >= quorum and all(lid in (0, *named) for lid in views.values() if lid >= 0):
                lid = named.pop()
                leader = self.member_by_id(lid)
                if leader is not None and leader.is_running() and views.get(leader.name) == lid:
                    return leader
            last = f"views {views}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"no agreed leader after {timeout}s: {last}")
            time.sleep(0.05)

    def live_member(self, exclude: Iterable[Member] = ()) -> ClusterMember:
        """A running member that answers Status, other than ``exclude``."""
        excluded = {id(m) for m in exclude}
        for m in self.members:
            if id(m) in excluded or not m.is_running():
                continue
            try:
                m.status()
                return m
            except grpc.RpcError:
                continue
        raise RuntimeError("no live member to talk to")

    # -- membership --------------------------------------------------------------------
    def _reconfigure(self, call: Callable[[ClusterMember], Any], timeout: float, exclude: Iterable[Member] = ()) -> Any:
        """``call`` through a live member, retried while the cluster refuses it as unhealthy.

        etcd refuses a membership change until the members it needs have been
        connected for a while ("unhealthy cluster"), and a leader change fails
        it in flight; both pass on their own.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return call(self.live_member(exclude))
            except (grpc.RpcError, RuntimeError) as e:
                transient = isinstance(e, RuntimeError) or e.code() in _TRANSIENT_CODES
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def add_member(self, name: str, learner: bool = False, timeout: float = START_TIMEOUT,
                   metadata: Sequence[tuple[str, str]] | None = None) -> ClusterMember:
        """MemberAdd through a live member (with ``metadata``, e.g. a root token), then start
        the new one into the existing cluster."""
        if self.member_by_name(name) is not None:
            raise ValueError(f"a member named {name!r} exists")
        m = self._new_member(name)
        try:
            request = rpc_pb2.MemberAddRequest(peerURLs=[m.advertise_peer_url], isLearner=learner)
            resp = self._reconfigure(lambda via: via.cluster.MemberAdd(request, metadata=metadata, timeout=5.0),
                                     timeout)
            m.member_id = resp.member.ID
            if m.peer_proxy is not None:
                m.peer_proxy.member_id = m.member_id
            entries = []
            for peer in resp.members:
                peer_name = name if peer.ID == resp.member.ID else peer.name
                entries += [f"{peer_name}={url}" for url in peer.peerURLs]
            m.initial_cluster = ",".join(entries)
            m.initial_cluster_state = "existing"
            self.members.append(m)
            m.start(timeout)
        except BaseException:
            if m not in self.members:
                m.close()
                if m.peer_proxy is not None:
                    m.peer_proxy.close()
            raise
        return m

    def remove_member(self, m: ClusterMember, timeout: float = 30.0) -> None:
        """MemberRemove through another live member, then stop the removed one."""
        if m.member_id is None:
            raise ValueError(f"{m!r} has no known member id")
        request = rpc_pb2.MemberRemoveRequest(ID=m.member_id)
        self._reconfigure(lambda via: via.cluster.MemberRemove(request, timeout=5.0), timeout, exclude=[m])
        self.members.remove(m)
        self._retired.append(m)
        m.stop()
        if m.peer_proxy is not None:
            m.peer_proxy.close()
