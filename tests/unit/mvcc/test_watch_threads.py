"""The hub's thread contract: an applier, a syncer and a consumer thread."""

import threading

from etcdx.backend import Backend
from etcdx.mvcc import KVStore
from etcdx.mvcc.watch_hub import WatchHub


def test_consumer_in_another_thread_gets_every_event_once_in_order(tmp_path):
    backend = Backend(str(tmp_path / "db"), map_size=1 << 28)
    store = KVStore(backend)
    hub = WatchHub(backend, max_buffered_events=5)
    ready = threading.Event()
    watcher = hub.watch(b"k/", b"k0", prev_kv=True, on_ready=ready.set)
    revisions = 400
    stop = threading.Event()
    errors = []

    def applier():
        for r in range(1, revisions + 1):
            with backend.write() as txn:
                w = store.write(txn)
                for i in range(r % 3 + 1):
                    w.put(b"k/%d" % i, b"%d" % r)
                revision = w.revision
                events = w.end()
            hub.notify(events, revision)

    def syncer():
        while not stop.wait(0.001):  # the server's periodic resync, sped up
            try:
                hub.sync_unsynced(max_events=7)
            except Exception as err:  # surfaced by the assertion below
                errors.append(err)
                return

    threads = [threading.Thread(target=applier), threading.Thread(target=syncer)]
    for t in threads:
        t.start()
    got = []
    last = revisions + 1  # a new store is at revision 1
    while not got or got[-1][0] < last:
        assert ready.wait(timeout=30), "no event within 30 s"
        ready.clear()
        got += [(e.kv.mod_revision, e.kv.key, e.prev_kv.value)
                for batch in watcher.take() for e in batch.events]
    stop.set()
    for t in threads:
        t.join(timeout=30)
    backend.close()
    assert errors == []
    assert [r for r, _, _ in got] == [r + 1 for r in range(1, revisions + 1)
                                      for _ in range(r % 3 + 1)]
    previous = {}
    for r, key, prev in got:
        assert prev == previous.get(key, b"")
        previous[key] = b"%d" % (r - 1)
