"""The applier: committed raft entries in, state changes and results out.

Every member applies the same entries in the same order, so everything here
is deterministic given the entries and the store (the only clock read is the
lessor's expiry bookkeeping, which is local, in-memory state). One call applies
a whole batch inside one backend write transaction, with the consistent index
written in the same transaction: the backend never runs ahead of the WAL and
never holds half a batch.

The applier knows nothing of asyncio, proposers or watchers: it returns what
happened (``Applied``), and the server answers proposers, feeds the watch hub
and reconfigures the transport from that.

Auth is checked here, as etcd's auth applier does: every entry is checked
against the auth state of the batch so far (``etcdx.auth.checks.check_apply``)
with the user and auth revision its proposer put in the header, after the
CORRUPT alarm's refusal and before the quota and the request's own checks,
so a request authorised under an older auth revision is refused on every
member alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from etcdx.auth import AUTH_FIELDS, AuthError, AuthState, checks
from etcdx.backend import WriteTxn
from etcdx.lease import attachment
from etcdx.lease import errors as lease_errors
from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.mvcc.kvstore import current_revision
from etcdx.pb import kv_pb2, raft_internal_pb2, rpc_pb2
from etcdx.raft.codec import decode_conf_change
from etcdx.raft.types import ConfChange, ConfChangeType, ConfState, Entry, EntryType
from etcdx.server import bootstrap, errors, kvops
from etcdx.server.alarms import CORRUPT, NOSPACE
from etcdx.server.membership import apply_conf_change as apply_member_change
from etcdx.server.membership import save_member, validate_conf_change
from etcdx.server.stores import Stores

log = logging.getLogger("etcdx.server")

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
Result = Any  # a response message, a list of members (conf change), None, or an EtcdError


@dataclass
class Applied:
    """What applying one batch did."""

    results: list[tuple[int, Result]] = field(default_factory=list)  # (request id, result or EtcdError)
    events: list[tuple[list[kv_pb2.Event], int]] = field(default_factory=list)  # (events, revision) per txn
    conf_changed: bool = False
    removed_self: bool = False
    compaction_scheduled: bool = False
    auth_changed: bool = False
    last_index: int = 0
    last_term: int = 0


class Applier:
    """Applies committed entries to the stores.

    ``apply_conf_change`` is raft's (``RawNode.apply_conf_change``): a conf
    change updates raft's configuration, the persisted ConfState and the
    ``members`` bucket together.
    """

    def __init__(self, stores: Stores, member_id: int,
                 apply_conf_change: Callable[[ConfChange], ConfState],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stores = stores
        self.member_id = member_id
        self._apply_conf_change_to_raft = apply_conf_change
        self._clock = clock
        # Entries up to here are in the backend already (it came as a snapshot).
        self.backend_index = stores.backend.consistent_index()[0]

    def apply(self, entries: list[Entry]) -> Applied:
        out = Applied()
        if not entries:
            return out
        with self.stores.backend.write() as btx:
            auth_state = self.stores.auth.state(btx)
            for e in entries:
                if e.index <= self.backend_index:
                    # In a backend received as a snapshot already; raft still needs its conf changes.
                    if e.type == EntryType.CONF_CHANGE:
                        self._apply_conf_change_to_raft(decode_conf_change(e))
                    continue
                if e.type == EntryType.NORMAL:
                    if not e.data:
                        continue  # a new leader's empty entry
                    req = InternalRaftRequest.FromString(e.data)
                    try:
                        res = self._apply_request(btx, req, e.index, auth_state, out)
                    except errors.EtcdError as err:
                        res = err
                    except AuthError as err:
                        res = errors.EtcdError(err.code, err.message)
                    if out.auth_changed and request_kind(req) in AUTH_FIELDS:
                        auth_state = self.stores.auth.state(btx)  # the next entry sees this change
                    out.results.append((req.header.id, res))
                elif e.type == EntryType.CONF_CHANGE:
                    cc = decode_conf_change(e)
                    out.results.append((cc.id, self._apply_conf_change(btx, cc, out)))
                    out.conf_changed = True
            last = entries[-1]
            if last.index > self.backend_index:
                btx.set_consistent_index(last.index, last.term)
        out.last_index, out.last_term = last.index, last.term
        return out

    # -- one request ------------------------------------------------------------------

    def _apply_request(self, btx: WriteTxn, req: InternalRaftRequest, index: int, auth: AuthState,
                       out: Applied) -> Result:
        which = request_kind(req)
        if which in _REFUSED_WHEN_CORRUPT and self.stores.alarms.active(CORRUPT):
            raise errors.CORRUPT  # every member alike: the log decides, as etcd's corrupt applier
        if auth.enabled:
            checks.check_apply(auth, req, _lease_keys(btx))
        if which in AUTH_FIELDS:
            res = self.stores.auth.apply(btx, req, index)
            out.auth_changed = True
            return res
        if which in ("put", "delete_range", "txn"):
            return self._apply_kv(btx, which, getattr(req, which), out)
        if which == "compaction":
            return self._apply_compaction(btx, req.compaction, out)
        if which == "lease_grant":
            return self._apply_lease_grant(btx, req.lease_grant)
        if which == "lease_revoke":
            return self._apply_lease_revoke(btx, req.lease_revoke, out)
        if which == "lease_checkpoint":
            return self._apply_lease_checkpoint(btx, req.lease_checkpoint)
        if which == "alarm":
            return apply_alarm(self.stores, btx, req.alarm)
        if which == "cluster_member_attr_set":
            r = req.cluster_member_attr_set
            m = self.stores.members.get(r.member_ID)
            if m is not None:
                m.name, m.client_urls = r.name, list(r.client_urls)
                save_member(btx, m)
            return None
        # Every member applies the same log: an entry this member cannot read
        # means its software is older than the leader's. Stop rather than diverge.
        raise RuntimeError(f"cannot apply internal request {which or 'with no known field'}")

    def _apply_kv(self, btx: WriteTxn, op: str, r: Any, out: Applied) -> Result:
        nospace = self.stores.alarms.active(NOSPACE)
        kv = self.stores.kv
        tw = kv.write(btx)
        ka = kvops.KVApply(tw, btx, self.stores.lessor, kv)
        begin = tw.revision
        try:
            if op == "put":
                if nospace:
                    raise errors.NO_SPACE
                resp = rpc_pb2.PutResponse()
                ka.check_put(r)
                ka.put(r, resp)
            elif op == "delete_range":
                resp = rpc_pb2.DeleteRangeResponse()
                ka.delete_range(r, resp)
            else:
                resp = rpc_pb2.TxnResponse()
                path = kvops.txn_path(tw, r)
                if nospace and kvops.is_write_txn(r, path)[0]:
                    raise errors.NO_SPACE
                ka.check_txn(r, path)
                ka.txn(r, path, resp)
                resp.header.revision = begin + 1 if ka.changed else begin
        finally:
            rev = tw.revision
            events = tw.end()
        if events:
            out.events.append((events, rev))
        return resp

    def _apply_compaction(self, btx: WriteTxn, r: rpc_pb2.CompactionRequest, out: Applied) -> Result:
        try:
            self.stores.kv.compact(r.revision, btx)
        except CompactedError:
            raise errors.COMPACTED from None
        except FutureRevisionError:
            raise errors.FUTURE_REV from None
        out.compaction_scheduled = True
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = current_revision(btx)
        return resp

    def _apply_lease_grant(self, btx: WriteTxn, r: rpc_pb2.LeaseGrantRequest) -> Result:
        if self.stores.alarms.active(NOSPACE):
            raise errors.NO_SPACE
        try:
            lease = self.stores.lessor.grant(btx, r.ID, r.TTL, self._clock())
        except lease_errors.LeaseExistsError:
            raise errors.LEASE_EXISTS from None
        except lease_errors.LeaseTTLTooLargeError:
            raise errors.LEASE_TTL_TOO_LARGE from None
        return rpc_pb2.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)

    def _apply_lease_revoke(self, btx: WriteTxn, r: rpc_pb2.LeaseRevokeRequest, out: Applied) -> Result:
        try:
            keys = self.stores.lessor.revoke(btx, r.ID)
        except lease_errors.LeaseNotFoundError:
            raise errors.LEASE_NOT_FOUND from None
        if keys:
            tw = self.stores.kv.write(btx)
            try:
                for k in sorted(keys):
                    tw.delete_range(k, b"")
            finally:
                rev = tw.revision
                events = tw.end()
            if events:
                out.events.append((events, rev))
        return rpc_pb2.LeaseRevokeResponse()

    def _apply_lease_checkpoint(self, btx: WriteTxn, r: rpc_pb2.LeaseCheckpointRequest) -> Result:
        now = self._clock()
        for cp in r.checkpoints:
            self.stores.lessor.checkpoint(btx, cp.ID, cp.remaining_TTL, now)
        return rpc_pb2.LeaseCheckpointResponse()

    def _apply_conf_change(self, btx: WriteTxn, cc: ConfChange, out: Applied) -> Result:
        stores = self.stores
        try:
            validate_conf_change(stores.members, stores.removed_ids, cc)
        except errors.EtcdError as err:
            # Invalid by the time it applies (e.g. raced with another change): a
            # no-op on every member alike.
            return err
        cs = self._apply_conf_change_to_raft(cc)
        bootstrap.save_conf_state(btx, cs)
        apply_member_change(btx, stores.members, cc)
        if cc.type == ConfChangeType.REMOVE_NODE:
            stores.removed_ids.add(cc.node_id)
            if cc.node_id == self.member_id:
                out.removed_self = True
        log.info("applied membership change", extra={"fields": {
            "change": cc.type.name, "member-id": f"{cc.node_id:x}",
            "voters": [f"{v:x}" for v in cs.voters], "learners": [f"{v:x}" for v in cs.learners]}})
        return list(stores.members.values())


def _lease_keys(btx: WriteTxn) -> Callable[[int], list[bytes]]:
    """The keys attached to a lease as of ``btx`` (earlier entries of the batch included)."""
    return lambda lease_id: [key for _, key in attachment.scan(btx, lease_id)] if lease_id else []


# While a CORRUPT alarm is raised these are refused; alarms (to clear it) and membership still apply.
_REFUSED_WHEN_CORRUPT = frozenset({"put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke"})
_REQUEST_FIELDS = tuple(f.name for f in InternalRaftRequest.DESCRIPTOR.fields if f.message_type is not None
                        and f.name != "header")


def request_kind(req: InternalRaftRequest) -> str | None:
    """The name of the request field set in ``req`` (etcd's InternalRaftRequest is not a oneof)."""
    for name in _REQUEST_FIELDS:
        if req.HasField(name):
            return name
    return None


def apply_alarm(stores: Stores, btx: WriteTxn | None, r: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
    """An AlarmRequest: GET reads (``btx`` may be None), ACTIVATE/DEACTIVATE change the alarms."""
    resp = rpc_pb2.AlarmResponse()
    alarms = stores.alarms
    if r.action == rpc_pb2.AlarmRequest.ACTIVATE:
        if r.alarm != rpc_pb2.NONE and alarms.activate(btx, r.memberID, r.alarm):
            log.warning("alarm raised", extra={"fields": {
                "alarm": rpc_pb2.AlarmType.Name(r.alarm), "member-id": f"{r.memberID:x}"}})
            resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
        return resp
    if r.action == rpc_pb2.AlarmRequest.DEACTIVATE:
        if alarms.deactivate(btx, r.memberID, r.alarm):
            log.warning("alarm cleared", extra={"fields": {
                "alarm": rpc_pb2.AlarmType.Name(r.alarm), "member-id": f"{r.memberID:x}"}})
            resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
        return resp
    for m, a in alarms.get(r.alarm):
        resp.alarms.add(memberID=m, alarm=a)
    return resp
