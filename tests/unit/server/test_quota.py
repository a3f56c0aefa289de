"""Writes over the quota raise the NOSPACE alarm once, however many of them there are."""

from __future__ import annotations

import asyncio

import pytest

from etcdx.backend import Backend
from etcdx.pb import rpc_pb2
from etcdx.server import errors
from etcdx.server.alarms import NOSPACE
from etcdx.server.kv_requests import Quota
from etcdx.server.stores import Stores


def test_a_burst_of_writes_over_the_quota_proposes_one_alarm(tmp_path):
    backend = Backend(str(tmp_path / "db"), map_size=1 << 26)
    stores = Stores(backend, min_lease_ttl=2)
    proposed: list[rpc_pb2.AlarmRequest] = []

    async def propose(req):
        proposed.append(req.alarm)
        with backend.write() as btx:  # applied: the alarm is now active
            stores.alarms.activate(btx, req.alarm.memberID, req.alarm.alarm)
        return rpc_pb2.AlarmResponse()

    async def scenario() -> None:
        quota = Quota(stores, quota_bytes=backend.size() + 100, member_id=7, propose=propose)
        job = asyncio.ensure_future(quota.run())
        try:
            for _ in range(50):
                with pytest.raises(errors.EtcdError) as err:
                    quota.check(1000)
                assert err.value == errors.NO_SPACE
            await asyncio.sleep(0.05)
            for _ in range(50):
                with pytest.raises(errors.EtcdError):
                    quota.check(1000)
            await asyncio.sleep(0.05)
            quota.check(10)  # under the quota: fine
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        backend.close()
    assert [(a.memberID, a.alarm, a.action) for a in proposed] == [(7, NOSPACE, rpc_pb2.AlarmRequest.ACTIVATE)]
