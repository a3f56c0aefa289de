"""Server CPU per no-op Put: etcdx's front end against grpcio's asyncio server.

Both servers answer every `KV/Put` with the same small PutResponse and do
nothing else, on uvloop, one process each. etcd's Go load generator drives
them in turn (put, 256-byte values) at several client counts; the figure is
server CPU (utime+stime from /proc/PID/stat over the run) divided by the
requests, which contention on a shared machine barely moves, unlike req/s.

    /work/shared/tools/build-etcd-benchmark.sh bench/out/benchmark   # once
    python3 bench/frontend_noop.py [--benchmark PATH] [--clients 1,64,256] [--total N]

Also `python3 bench/frontend_noop.py --serve frontend|grpcio PORT` runs one server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench._procs import free_port  # noqa: E402
from etcdx.pb import rpc_pb2  # noqa: E402

PUT = "/etcdserverpb.KV/Put"
REPLY = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3,
                                                          raft_term=4)).SerializeToString()
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def serve_frontend(port: int) -> None:
    from etcdx.frontend import FrontEnd, Router
    router = Router()
    router.unary(PUT, lambda message, call: REPLY)
    fe = FrontEnd(router, max_receive_message_bytes=2 * 1024 * 1024)
    await fe.listen(f"http://127.0.0.1:{port}")
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


async def serve_grpcio(port: int) -> None:
    import grpc

    def put(request: bytes, context) -> bytes:
        return REPLY

    handler = grpc.method_handlers_generic_handler(
        "etcdserverpb.KV", {"Put": grpc.unary_unary_rpc_method_handler(put)})
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2 * 1024 * 1024)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def measure(kind: str, benchmark: str, clients: int, total: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} server did not start")
        conns = max(1, min(16, clients))
        cmd = [benchmark, "--endpoints", f"127.0.0.1:{port}", "--clients", str(clients), "--conns", str(conns),
               "put", "--key-size", "8", "--val-size", "256", "--total", str(total), "--sequential-keys"]
        before = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - t0
        after = cpu_seconds(proc.pid)
        user, system = after[0] - before[0], after[1] - before[1]
        if out.returncode != 0 or "Requests/sec" not in out.stdout:
            raise RuntimeError(f"benchmark failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        errors = [line for line in out.stdout.splitlines() if "error" in line.lower()]
        return {"server": kind, "clients": clients, "total": total,
                "cpu_us_per_req": (user + system) / total * 1e6, "user_us_per_req": user / total * 1e6,
                "sys_us_per_req": system / total * 1e6, "req_per_s": total / elapsed, "errors": errors}
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"))
    ap.add_argument("--benchmark", default=str(REPO_ROOT / "bench/out/benchmark"))
    ap.add_argument("--clients", default="1,64,256")
    ap.add_argument("--total", type=int, default=40000, help="requests per run (a fifth of it for 1 client)")
    ap.add_argument("--servers", default="frontend,grpcio")
    args = ap.parse_args()
    if args.serve:
        import uvloop
        kind, port = args.serve[0], int(args.serve[1])
        uvloop.run(serve_frontend(port) if kind == "frontend" else serve_grpcio(port))
        return
    print(f"{'server':<10} {'clients':>7} {'requests':>9} {'CPU µs/req':>11} {'user':>6} {'sys':>6} {'req/s':>9}")
    for clients in (int(c) for c in args.clients.split(",")):
        total = args.total // 5 if clients == 1 else args.total
        for kind in args.servers.split(","):
            r = measure(kind, args.benchmark, clients, total)
            print(f"{r['server']:<10} {r['clients']:>7} {r['total']:>9} {r['cpu_us_per_req']:>11.1f} "
                  f"{r['user_us_per_req']:>6.1f} {r['sys_us_per_req']:>6.1f} {r['req_per_s']:>9.0f}" + (f"  errors: {r['errors'][:3]}" if r["errors"] else ""), flush=True)


if __name__ == "__main__":
    main()
