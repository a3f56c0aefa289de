import os
import subprocess
import sys
import textwrap

from etcdx.backend import Backend
from etcdx.mvcc import KVStore


def test_kill_9_mid_batch_leaves_the_last_committed_batch_and_its_consistent_index(tmp_path):
    path = str(tmp_path / "db")
    child = textwrap.dedent(f"""
        import os, signal
        from etcdx.backend import Backend
        from etcdx.mvcc import KVStore
        b = Backend({path!r}, map_size=1 << 30)
        s = KVStore(b)
        index = 0
        for batch in range(50):
            txn = b.write()
            for _ in range(100):
                index += 1
                w = s.write(txn)
                w.put(b"key-%d" % (index % 37), b"x" * 500)
                w.end()
                txn.set_consistent_index(index, 1)
            if batch == 49:
                os.kill(os.getpid(), signal.SIGKILL)
            txn.__exit__(None, None, None)
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    assert subprocess.run([sys.executable, "-c", child], env=env, timeout=120).returncode == -9
    backend = Backend(path, map_size=1 << 30)
    store = KVStore(backend)
    assert backend.consistent_index() == (4900, 1)
    assert store.current_revision == 4901  # etcd's store starts at revision 1
    assert store.range(b"key-", b"key.", count_only=True).count == 37
    assert store.range(b"key-0").kvs[0].mod_revision == 4885
    backend.close()
