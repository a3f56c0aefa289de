"""etcdctl 3.4's `auth`, `user` and `role` commands, with `--user`/`--password`, transcripts pinned.

The transcript below is what etcdctl 3.4.23 printed against a real etcd 3.4.23
(exit code, stdout, stderr of every command). The same script runs against
etcd and against etcdx and must print exactly that. The etcdx case skips
itself while etcdx answers AuthStatus with UNIMPLEMENTED (auth not wired into
the server yet), so it turns on by itself once auth is served.
"""

from __future__ import annotations

import json
import os
import subprocess

import grpc
import pytest
from support import procs

from etcdx.pb import rpc_pb2, rpc_pb2_grpc

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]

CTL_TIMEOUT = 20
ROOT = "--user=root:rootpw"
ALICE = "--user=alice:alicepw"

SCRIPT: list[tuple[tuple[str, ...], str | None]] = [
    # set-up while auth is off
    (("auth", "enable"), None),
    (("user", "add", "root:rootpw"), None),
    (("user", "add", "root:again"), None),
    (("user", "add", "alice:alicepw"), None),
    (("user", "add", "nopw", "--no-password"), None),
    (("role", "add", "reader"), None),
    (("role", "add", "reader"), None),
    (("role", "grant-permission", "reader", "read", "foo"), None),
    (("role", "grant-permission", "reader", "readwrite", "--prefix", "dir/"), None),
    (("role", "grant-permission", "reader", "write", "--from-key", "z"), None),
    (("role", "grant-permission", "reader", "read", "k1", "k5"), None),
    (("role", "grant-permission", "reader", "readwrite", "foo"), None),
    (("role", "grant-permission", "nosuch", "read", "foo"), None),
    (("role", "get", "reader"), None),
    (("role", "get", "nosuch"), None),
    (("user", "grant-role", "alice", "reader"), None),
    (("user", "grant-role", "alice", "reader"), None),
    (("user", "grant-role", "alice", "nosuch"), None),
    (("user", "grant-role", "nobody", "reader"), None),
    (("user", "get", "alice"), None),
    (("user", "get", "alice", "--detail"), None),
    (("user", "get", "nobody"), None),
    (("user", "list"), None),
    (("role", "list"), None),
    # etcdctl's `auth enable` adds the root role and grants it to root when missing
    (("auth", "enable"), None),
    (("auth", "enable"), None),
    (("get", "foo"), None),
    (("user", "list"), None),
    ((ROOT, "auth", "enable"), None),
    ((ROOT, "role", "list"), None),
    ((ROOT, "role", "get", "root"), None),
    ((ROOT, "user", "get", "root", "--detail"), None),
    (("--user=alice:wrong", "get", "foo"), None),
    (("--user=nobody:pw", "get", "foo"), None),
    ((ALICE, "put", "foo", "bar"), None),
    ((ROOT, "put", "foo", "bar"), None),
    ((ALICE, "get", "foo"), None),
    (("--user=alice", "--password=alicepw", "put", "dir/x", "1"), None),
    ((ALICE, "get", "dir/", "--prefix"), None),
    ((ALICE, "get", "k1", "k5"), None),
    ((ALICE, "get", "k1", "k6"), None),
    ((ALICE, "put", "zebra", "2"), None),
    ((ALICE, "get", "zebra"), None),
    ((ALICE, "del", "dir/x", "--prev-kv"), None),
    ((ALICE, "user", "list"), None),
    ((ALICE, "user", "get", "alice"), None),
    ((ALICE, "user", "get", "root"), None),
    ((ALICE, "role", "get", "reader"), None),
    ((ALICE, "role", "get", "root"), None),
    ((ALICE, "role", "add", "mine"), None),
    ((ALICE, "auth", "disable"), None),
    (("--user=nopw:x", "get", "foo"), None),
    ((ROOT, "role", "revoke-permission", "reader", "foo"), None),
    ((ROOT, "role", "revoke-permission", "reader", "foo"), None),
    ((ROOT, "role", "revoke-permission", "reader", "dir/", "--prefix"), None),
    ((ROOT, "role", "get", "reader"), None),
    ((ALICE, "get", "foo"), None),
    ((ROOT, "user", "revoke-role", "alice", "reader"), None),
    ((ROOT, "user", "revoke-role", "alice", "reader"), None),
    ((ROOT, "user", "passwd", "alice", "--interactive=false"), "newpw\n"),
    ((ALICE, "get", "foo"), None),
    (("--user=alice:newpw", "get", "foo"), None),
    ((ROOT, "user", "delete", "root"), None),
    ((ROOT, "user", "revoke-role", "root", "root"), None),
    ((ROOT, "role", "delete", "root"), None),
    ((ROOT, "user", "grant-role", "alice", "reader"), None),
    ((ROOT, "role", "delete", "reader"), None),
    ((ROOT, "user", "get", "alice"), None),
    ((ROOT, "role", "delete", "reader"), None),
    ((ROOT, "user", "delete", "alice"), None),
    ((ROOT, "user", "delete", "alice"), None),
    ((ROOT, "user", "get", "nopw", "--detail"), None),
    ((ROOT, "auth", "disable"), None),
    (("get", "foo"), None),
    (("auth", "disable"), None),
    (("user", "revoke-role", "root", "root"), None),
    (("role", "delete", "root"), None),
    (("user", "delete", "root"), None),
    (("user", "list"), None),
    (("role", "list"), None),
]

EXPECTED = """\
$ etcdctl auth enable
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: root user does not exist
err| Error: etcdserver: root user does not exist
$ etcdctl user add root:rootpw
exit 0
out| User root created
$ etcdctl user add root:again
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: user name already exists
err| Error: etcdserver: user name already exists
$ etcdctl user add alice:alicepw
exit 0
out| User alice created
$ etcdctl user add nopw --no-password
exit 0
out| User nopw created
$ etcdctl role add reader
exit 0
out| Role reader created
$ etcdctl role add reader
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: role name already exists
err| Error: etcdserver: role name already exists
$ etcdctl role grant-permission reader read foo
exit 0
out| Role reader updated
$ etcdctl role grant-permission reader readwrite --prefix dir/
exit 0
out| Role reader updated
$ etcdctl role grant-permission reader write --from-key z
exit 0
out| Role reader updated
$ etcdctl role grant-permission reader read k1 k5
exit 0
out| Role reader updated
$ etcdctl role grant-permission reader readwrite foo
exit 0
out| Role reader updated
$ etcdctl role grant-permission nosuch read foo
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: role name not found
err| Error: etcdserver: role name not found
$ etcdctl role get reader
exit 0
out| Role reader
out| KV Read:
out| 	[dir/, dir0) (prefix dir/)
out| 	foo
out| 	[k1, k5)
out| KV Write:
out| 	[dir/, dir0) (prefix dir/)
out| 	foo
out| 	[z, <open ended>
$ etcdctl role get nosuch
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: role name not found
err| Error: etcdserver: role name not found
$ etcdctl user grant-role alice reader
exit 0
out| Role reader is granted to user alice
$ etcdctl user grant-role alice reader
exit 0
out| Role reader is granted to user alice
$ etcdctl user grant-role alice nosuch
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: role name not found
err| Error: etcdserver: role name not found
$ etcdctl user grant-role nobody reader
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: user name not found
err| Error: etcdserver: user name not found
$ etcdctl user get alice
exit 0
out| User: alice
out| Roles: reader
$ etcdctl user get alice --detail
exit 0
out| User: alice
out| 
out| Role reader
out| KV Read:
out| 	[dir/, dir0) (prefix dir/)
out| 	foo
out| 	[k1, k5)
out| KV Write:
out| 	[dir/, dir0) (prefix dir/)
out| 	foo
out| 	[z, <open ended>
$ etcdctl user get nobody
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: user name not found
err| Error: etcdserver: user name not found
$ etcdctl user list
exit 0
out| alice
out| nopw
out| root
$ etcdctl role list
exit 0
out| reader
$ etcdctl auth enable
exit 0
out| Authentication Enabled
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: root user does not have root role
$ etcdctl auth enable
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: user name is empty
err| Error: etcdserver: user name is empty
$ etcdctl get foo
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: user name is empty
err| Error: etcdserver: user name is empty
$ etcdctl user list
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: user name is empty
err| Error: etcdserver: user name is empty
$ etcdctl --user=root:rootpw auth enable
exit 0
out| Authentication Enabled
$ etcdctl --user=root:rootpw role list
exit 0
out| reader
out| root
$ etcdctl --user=root:rootpw role get root
exit 0
out| Role root
out| KV Read:
out| KV Write:
$ etcdctl --user=root:rootpw user get root --detail
exit 0
out| User: root
out| 
out| Role root
out| KV Read:
out| KV Write:
$ etcdctl --user=alice:wrong get foo
exit 2
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: authentication failed, invalid user ID or password
err| Error: etcdserver: authentication failed, invalid user ID or password
$ etcdctl --user=nobody:pw get foo
exit 2
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: authentication failed, invalid user ID or password
err| Error: etcdserver: authentication failed, invalid user ID or password
$ etcdctl --user=alice:alicepw put foo bar
exit 0
out| OK
$ etcdctl --user=root:rootpw put foo bar
exit 0
out| OK
$ etcdctl --user=alice:alicepw get foo
exit 0
out| foo
out| bar
$ etcdctl --user=alice --password=alicepw put dir/x 1
exit 0
out| OK
$ etcdctl --user=alice:alicepw get dir/ --prefix
exit 0
out| dir/x
out| 1
$ etcdctl --user=alice:alicepw get k1 k5
exit 0
$ etcdctl --user=alice:alicepw get k1 k6
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=alice:alicepw put zebra 2
exit 0
out| OK
$ etcdctl --user=alice:alicepw get zebra
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=alice:alicepw del dir/x --prev-kv
exit 0
out| 1
out| dir/x
out| 1
$ etcdctl --user=alice:alicepw user list
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=alice:alicepw user get alice
exit 0
out| User: alice
out| Roles: reader
$ etcdctl --user=alice:alicepw user get root
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=alice:alicepw role get reader
exit 0
out| Role reader
out| KV Read:
out| 	[dir/, dir0) (prefix dir/)
out| 	foo
out| 	[k1, k5)
out| KV Write:
out| 	[dir/, dir0) (prefix dir/)
out| 	foo
out| 	[z, <open ended>
$ etcdctl --user=alice:alicepw role get root
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=alice:alicepw role add mine
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=alice:alicepw auth disable
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=nopw:x get foo
exit 2
err| log warn: retrying of unary invoker failed: rpc error: code = Unknown desc = auth: authentication failed, password was given for no password user
err| Error: rpc error: code = Unknown desc = auth: authentication failed, password was given for no password user
$ etcdctl --user=root:rootpw role revoke-permission reader foo
exit 0
out| Permission of key foo is revoked from role reader
$ etcdctl --user=root:rootpw role revoke-permission reader foo
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: permission is not granted to the role
err| Error: etcdserver: permission is not granted to the role
$ etcdctl --user=root:rootpw role revoke-permission reader dir/ --prefix
exit 0
out| Permission of range [dir/, dir0) is revoked from role reader
$ etcdctl --user=root:rootpw role get reader
exit 0
out| Role reader
out| KV Read:
out| 	[k1, k5)
out| KV Write:
out| 	[z, <open ended>
$ etcdctl --user=alice:alicepw get foo
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=root:rootpw user revoke-role alice reader
exit 0
out| Role reader is revoked from user alice
$ etcdctl --user=root:rootpw user revoke-role alice reader
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: role is not granted to the user
err| Error: etcdserver: role is not granted to the user
$ etcdctl --user=root:rootpw user passwd alice --interactive=false <<< 'newpw\\n'
exit 0
out| Password updated
$ etcdctl --user=alice:alicepw get foo
exit 2
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: authentication failed, invalid user ID or password
err| Error: etcdserver: authentication failed, invalid user ID or password
$ etcdctl --user=alice:newpw get foo
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = PermissionDenied desc = etcdserver: permission denied
err| Error: etcdserver: permission denied
$ etcdctl --user=root:rootpw user delete root
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: invalid auth management
err| Error: etcdserver: invalid auth management
$ etcdctl --user=root:rootpw user revoke-role root root
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: invalid auth management
err| Error: etcdserver: invalid auth management
$ etcdctl --user=root:rootpw role delete root
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = InvalidArgument desc = etcdserver: invalid auth management
err| Error: etcdserver: invalid auth management
$ etcdctl --user=root:rootpw user grant-role alice reader
exit 0
out| Role reader is granted to user alice
$ etcdctl --user=root:rootpw role delete reader
exit 0
out| Role reader deleted
$ etcdctl --user=root:rootpw user get alice
exit 0
out| User: alice
out| Roles:
$ etcdctl --user=root:rootpw role delete reader
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: role name not found
err| Error: etcdserver: role name not found
$ etcdctl --user=root:rootpw user delete alice
exit 0
out| User alice deleted
$ etcdctl --user=root:rootpw user delete alice
exit 1
err| log warn: retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = etcdserver: user name not found
err| Error: etcdserver: user name not found
$ etcdctl --user=root:rootpw user get nopw --detail
exit 0
out| User: nopw
$ etcdctl --user=root:rootpw auth disable
exit 0
out| Authentication Disabled
$ etcdctl get foo
exit 0
out| foo
out| bar
$ etcdctl auth disable
exit 0
out| Authentication Disabled
$ etcdctl user revoke-role root root
exit 0
out| Role root is revoked from user root
$ etcdctl role delete root
exit 0
out| Role root deleted
$ etcdctl user delete root
exit 0
out| User root deleted
$ etcdctl user list
exit 0
out| nopw
$ etcdctl role list
exit 0
""".splitlines()


def ctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return env


def transcript(member: procs.Member) -> list[str]:
    lines: list[str] = []
    for args, stdin in SCRIPT:
        r = subprocess.run(
            [procs.ETCDCTL_BIN, f"--endpoints={member.endpoint}", "--dial-timeout=5s",
             "--command-timeout=15s", *args],
            input=stdin, capture_output=True, text=True, env=ctl_env(), check=False, timeout=CTL_TIMEOUT,
        )
        lines.append(f"$ etcdctl {' '.join(args)}" + (f" <<< {stdin!r}" if stdin else ""))
        lines.append(f"exit {r.returncode}")
        lines.extend("out| " + line for line in r.stdout.splitlines())
        lines.extend("err| " + _log_line(line) for line in r.stderr.splitlines())
    return lines


def _log_line(line: str) -> str:
    """etcdctl's zap log lines (retry warnings): keep level, message and error only."""
    if line.startswith('{"level"'):
        try:
            entry = json.loads(line)
        except ValueError:
            return line
        return f"log {entry.get('level')}: {entry.get('msg')}: {entry.get('error')}"
    return line


def auth_unimplemented(member: procs.Member) -> bool:
    try:
        rpc_pb2_grpc.AuthStub(member.channel).AuthStatus(rpc_pb2.AuthStatusRequest(), timeout=5)
    except grpc.RpcError as err:
        return err.code() == grpc.StatusCode.UNIMPLEMENTED
    return False


@pytest.mark.parametrize("kind, args", [("etcd", []), ("etcdx", []), ("etcdx", ["--api-workers", "2"])],
                         ids=["etcd", "etcdx", "etcdx-workers"])
def test_auth_user_role_transcript(kind, args, member_group):
    procs.require("etcdctl")
    procs.require(kind)
    member = member_group.new(kind, extra_args=args)
    if kind == "etcdx" and auth_unimplemented(member):
        pytest.skip("etcdx answers AuthStatus with UNIMPLEMENTED: auth is not served yet")
    got = transcript(member)
    assert got == EXPECTED, "\n".join(got)
