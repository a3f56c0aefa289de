import io
import os
import subprocess
import sys
import textwrap

import pytest

from etcdx.backend import Backend, buckets


@pytest.fixture
def backend(tmp_path):
    b = Backend(str(tmp_path / "db"), map_size=1 << 30)
    yield b
    b.close()


def test_all_etcd_buckets_exist_at_open(backend):
    with backend.write() as txn:
        for name in buckets.ALL:
            txn.put(name, b"k", b"v")
    with backend.read() as txn:
        assert all(txn.get(name, b"k") == b"v" for name in buckets.ALL)


def test_write_commits_on_clean_exit_and_aborts_on_exception(backend):
    with backend.write() as txn:
        txn.put(buckets.KEY, b"a", b"1")
    with pytest.raises(RuntimeError):
        with backend.write() as txn:
            txn.put(buckets.KEY, b"b", b"2")
            raise RuntimeError
    with backend.read() as txn:
        assert txn.get(buckets.KEY, b"a") == b"1"
        assert txn.get(buckets.KEY, b"b") is None


def test_write_txn_sees_its_own_writes_and_readers_see_snapshot(backend):
    with backend.read() as before:
        with backend.write() as txn:
            txn.put(buckets.KEY, b"a", b"1")
            assert txn.get(buckets.KEY, b"a") == b"1"
            assert txn.delete(buckets.KEY, b"a")
            assert not txn.delete(buckets.KEY, b"a")
            txn.put(buckets.KEY, b"a", b"2")
        assert before.get(buckets.KEY, b"a") is None
    with backend.read() as txn:
        assert txn.get(buckets.KEY, b"a") == b"2"


def test_scan_is_half_open_in_both_directions(backend):
    with backend.write() as txn:
        for k in (b"a", b"b", b"c", b"d"):
            txn.put(buckets.KEY, k, k.upper())
    with backend.read() as txn:
        assert [k for k, _ in txn.scan(buckets.KEY, b"b", b"d")] == [b"b", b"c"]
        assert [k for k, _ in txn.scan(buckets.KEY, b"b")] == [b"b", b"c", b"d"]
        assert [k for k, _ in txn.scan(buckets.KEY, b"b", b"d", reverse=True)] == [b"c", b"b"]
        assert [k for k, _ in txn.scan(buckets.KEY, b"a", None, reverse=True)] == [
            b"d", b"c", b"b", b"a"]
        assert [k for k, _ in txn.scan(buckets.KEY, b"0", b"zz", reverse=True)][0] == b"d"
        assert list(txn.scan(buckets.KEY, b"e")) == []
        assert list(txn.scan(buckets.KEY, b"0", b"a", reverse=True)) == []


def test_append_rejects_a_key_that_is_not_the_greatest(backend):
    with backend.write() as txn:
        txn.append(buckets.KEY, b"b", b"")
        txn.append(buckets.KEY, b"c", b"")
        with pytest.raises(ValueError):
            txn.append(buckets.KEY, b"a", b"")


def test_consistent_index_is_zero_when_new_and_persists_across_reopen(tmp_path):
    path = str(tmp_path / "db")
    b = Backend(path, map_size=1 << 30)
    assert b.consistent_index() == (0, 0)
    with b.write() as txn:
        txn.set_consistent_index(42, 3)
    b.close()
    b = Backend(path, map_size=1 << 30)
    assert b.consistent_index() == (42, 3)
    b.close()


def test_defragment_shrinks_file_and_keeps_data(backend):
    with backend.write() as txn:
        for i in range(3000):
            txn.put(buckets.KEY, i.to_bytes(4, "big"), b"x" * 1000)
    with backend.write() as txn:
        for i in range(0, 3000, 2):
            txn.delete(buckets.KEY, i.to_bytes(4, "big"))
    size_before = backend.size()
    assert backend.size_in_use() < size_before
    backend.defragment()
    assert backend.size() < size_before
    with backend.read() as txn:
        assert sum(1 for _ in txn.scan(buckets.KEY, b"")) == 1500
        assert txn.get(buckets.KEY, (1).to_bytes(4, "big")) == b"x" * 1000


def test_snapshot_is_a_point_in_time_database(backend, tmp_path):
    with backend.write() as txn:
        txn.put(buckets.KEY, b"a", b"1")
        txn.set_consistent_index(7, 1)
    out = io.BytesIO()
    backend.snapshot(out)
    with backend.write() as txn:
        txn.put(buckets.KEY, b"b", b"2")
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (restored_dir / "data.mdb").write_bytes(out.getvalue())
    restored = Backend(str(restored_dir), map_size=1 << 30)
    assert restored.consistent_index() == (7, 1)
    with restored.read() as txn:
        assert txn.get(buckets.KEY, b"a") == b"1"
        assert txn.get(buckets.KEY, b"b") is None
    restored.close()


def test_readonly_backend_in_another_process_reads_what_the_writer_committed(backend):
    with backend.write() as txn:
        txn.put(buckets.META, b"x", b"y")
    reader = textwrap.dedent(f"""
        from etcdx.backend import Backend
        b = Backend({backend.path!r}, map_size=1 << 30, readonly=True)
        with b.read() as txn:
            print(txn.get(b"meta", b"x").decode())
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", reader], env=env, timeout=60,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "y"


def test_kill_9_keeps_every_committed_txn_and_none_of_the_open_one(tmp_path):
    path = str(tmp_path / "db")
    child = textwrap.dedent(f"""
        import os, signal
        from etcdx.backend import Backend
        b = Backend({path!r}, map_size=1 << 30)
        for i in range(200):
            with b.write() as txn:
                txn.put(b"key", i.to_bytes(4, "big"), b"v" * 3000)
                txn.set_consistent_index(i + 1, 1)
        txn = b.write()
        for i in range(200, 2000):
            txn.put(b"key", i.to_bytes(4, "big"), b"w" * 3000)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-c", child], env=env, timeout=60)
    assert proc.returncode == -9
    b = Backend(path, map_size=1 << 30)
    assert b.consistent_index() == (200, 1)
    with b.read() as txn:
        keys = [k for k, _ in txn.scan(buckets.KEY, b"")]
    assert keys == [i.to_bytes(4, "big") for i in range(200)]
    b.close()


def test_a_reader_process_follows_a_defragment_by_reopening(backend):
    with backend.write() as txn:
        txn.put(buckets.META, b"x", b"before")
    reader = textwrap.dedent(f"""
        import sys
        from etcdx.backend import Backend
        b = Backend({backend.path!r}, map_size=1 << 30, readonly=True)
        print(b.reopen_if_replaced(), flush=True)
        sys.stdin.readline()
        print(b.reopen_if_replaced(), flush=True)
        with b.read() as txn:
            print(txn.get(b"meta", b"x").decode())
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", reader], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "False"
    backend.defragment()
    with backend.write() as txn:
        txn.put(buckets.META, b"x", b"after")
    out, _ = proc.communicate("go\n", timeout=60)
    assert out.split() == ["True", "after"]
