"""A tiny in-memory network of RawNodes for scenario tests.

Each node runs the host loop of ``etcdx.raft.rawnode`` against a
MemoryStorage; messages are delivered synchronously, in order, until the
cluster is quiet. Links can be cut to model partitions. Committed entries are
recorded per node, and conf-change entries are applied as a host would.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from etcdx.raft import (
    Config,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    ReadState,
    Ready,
    StateType,
)
from etcdx.raft.codec import decode_conf_change


def make_storage(peers: Iterable[int], terms: Iterable[int] = (), term: int | None = None) -> MemoryStorage:
    """A bootstrapped storage whose log after the bootstrap point (index 1, term 1) holds
    entries of ``terms`` at indexes 2, 3, ...; the hard state's term is ``term`` or the last term."""
    s = MemoryStorage()
    RawNode.bootstrap(s, list(peers))
    ents = [Entry(term=t, index=i, data=b"") for i, t in enumerate(terms, 2)]
    s.append(ents)
    last_term = ents[-1].term if ents else 1
    s.set_hard_state(HardState(term=term if term is not None else last_term, commit=1))
    return s


class Network:
    def __init__(
        self,
        ids: Iterable[int],
        *,
        storages: dict[int, MemoryStorage] | None = None,
        seed: int = 1,
        **config: Any,
    ) -> None:
        self.ids = sorted(ids)
        self.config = dict(config)
        self.seed = seed
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.cut_links: set[tuple[int, int]] = set()
        # A filter deciding per message whether it is delivered (True) or dropped.
        self.filter: Callable[[Message], bool] | None = None
        # Every message sent, in order, for tests that inspect traffic.
        self.trace: list[Message] = []
        for i in self.ids:
            s = storages[i] if storages and i in storages else make_storage(self.ids)
            self.add_node(i, s)

    def add_node(self, id: int, storage: MemoryStorage, **overrides: Any) -> RawNode:
        cfg = {**self.config, **overrides}
        node = RawNode(Config(id=id, storage=storage, rand=random.Random(self.seed * 1000 + id), **cfg))
        self.storages[id] = storage
        self.nodes[id] = node
        self.applied.setdefault(id, [])
        self.read_states.setdefault(id, [])
        return node

    def restart(self, id: int) -> RawNode:
        """Recreate node ``id`` from its storage, as after a crash.

        Like a host without a persistent state machine, it restores the latest
        snapshot and re-applies the committed entries after it (conf changes
        included: the storage's ConfState is only the snapshot's).
        """
        snap_index = self.storages[id].snapshot().metadata.index
        self.applied[id] = [e for e in self.applied[id] if e.index <= snap_index]
        return self.add_node(id, self.storages[id], applied=snap_index)

    # ----- partitions

    def cut(self, a: int, b: int) -> None:
        self.cut_links |= {(a, b), (b, a)}

    def isolate(self, id: int) -> None:
        for other in self.ids:
            if other != id:
                self.cut(id, other)

    def heal(self) -> None:
        self.cut_links.clear()

    # ----- the host loop

    def handle_ready(self, id: int) -> list[Message]:
        """One turn of the host loop for node ``id``: persist, collect messages, apply, advance."""
        node = self.nodes[id]
        s = self.storages[id]
        rd: Ready = node.ready()
        if rd.snapshot is not None:
            s.apply_snapshot(rd.snapshot)
        s.append(rd.entries)
        if rd.hard_state is not None:
            s.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            if e.type in (EntryType.CONF_CHANGE, EntryType.CONF_CHANGE_V2):
                node.apply_conf_change(decode_conf_change(e))
        self.applied[id].extend(rd.committed_entries)
        self.read_states[id].extend(rd.read_states)
        node.advance(rd)
        return rd.messages

    def send(self, msgs: list[Message]) -> list[Message]:
        """The messages of ``msgs`` that get through (to live nodes, over uncut links)."""
        out = []
        for m in msgs:
            self.trace.append(m)
            if (m.from_, m.to) in self.cut_links or m.to not in self.nodes:
                continue
            if self.filter is not None and not self.filter(m):
                continue
            out.append(m)
        return out

    def stabilize(self, max_steps: int = 100_000) -> None:
        """Run host loops and deliver messages until no node has anything to do."""
        for _ in range(max_steps):
            busy = False
            for i in self.ids:
                node = self.nodes.get(i)
                if node is None or not node.has_ready():
                    continue
                busy = True
                for m in self.send(self.handle_ready(i)):
                    self.nodes[m.to].step(m)
            if not busy:
                return
        raise AssertionError("network did not stabilize")

    def tick(self, id: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[id].tick()

    def tick_all(self, n: int = 1) -> None:
        """Tick every node ``n`` times, stabilizing after each round."""
        for _ in range(n):
            for i in self.ids:
                if i in self.nodes:
                    self.nodes[i].tick()
            self.stabilize()

    def elect(self, id: int) -> None:
        self.nodes[id].campaign()
        self.stabilize()
        assert self.state(id) == StateType.LEADER, f"{id} failed to become leader"

    # ----- inspection

    def state(self, id: int) -> StateType:
        return self.nodes[id].raft.state

    def leader(self) -> int | None:
        leaders = [i for i, n in self.nodes.items() if n.raft.state == StateType.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    def term(self, id: int) -> int:
        return self.nodes[id].raft.term

    def committed(self, id: int) -> int:
        return self.nodes[id].raft.log.committed

    def applied_data(self, id: int) -> list[bytes]:
        """The data of applied normal, non-empty entries of node ``id``."""
        return [e.data for e in self.applied[id] if e.type == EntryType.NORMAL and e.data]

    def log_terms(self, id: int) -> list[int]:
        """Terms of node ``id``'s entries after the bootstrap point."""
        log = self.nodes[id].raft.log
        return [log.term(i) for i in range(2, log.last_index() + 1)]

    def messages_of(self, t: MessageType) -> list[Message]:
        return [m for m in self.trace if m.type == t]
