"""Auth as the member serves it: who a request runs as, etcd's checks, and the Auth RPCs.

Who: a request's token (gRPC metadata ``token``, the gateway's Authorization
header), else, with ``--client-cert-auth``, its client certificate's common
name (etcd's ``AuthInfoFromCtx``). A simple token names the raft index it was
assigned at; a member that has not applied that index yet waits for it (up to
the request timeout), so a token fresh from another member is not refused.

Checks, as etcd 3.4 makes them (``tests/conformance/test_auth_matrix.py`` pins
every RPC against a real etcd): writes are checked when applied, against the
auth revision their proposer authorised them under, and once here before
proposing (a refusal costs no log entry; the applier's check is the one that
counts). Reads served outside the log are checked, read, then re-checked
against the revision. Which RPCs look at the caller at all is etcd's choice,
kept as is: Status, MemberList, MoveLeader and the lease reads do not.

Passwords are hashed (UserAdd, UserChangePassword) and checked
(Authenticate) on a small thread pool: bcrypt takes tens of milliseconds and
must not stall raft. Hashing happens before the proposal, so the log carries
only the hash and every member stores the same bytes. A request waiting for
a hashing thread that its client gave up on never hashes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Awaitable, Callable, Protocol

from etcdx.auth import AuthError, AuthInfo, AuthState, checks, errors as auth_errors, identity, passwords
from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.server import errors
from etcdx.server.headers import Headers
from etcdx.server.read_index import AppliedIndex
from etcdx.server.stores import Stores

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
Propose = Callable[[InternalRaftRequest], Awaitable[Any]]

BCRYPT_THREADS = 2
TOKEN_INDEX_AHEAD = 10000
"""A simple token naming an index this far past the commit index is refused at once, not waited for."""


class Credentials(Protocol):
    """What a transport learned about the caller (``etcdx.api.context.CallContext`` is one)."""

    token: str
    cert_cn: str


class _NoCredentials:
    token = ""
    cert_cn = ""


NO_CREDENTIALS: Credentials = _NoCredentials()


def etcd_error(err: AuthError, *, untranslated: bool = False) -> errors.EtcdError:
    """The client-visible error; ``untranslated`` where etcd 3.4 sends the auth package's text."""
    if untranslated:
        return errors.EtcdError(*err.untranslated())
    return errors.EtcdError(err.code, err.message)


def request_for(info: AuthInfo | None, **field: Any) -> InternalRaftRequest:
    """The proposal for one request field, carrying who it was authorised for (etcd's header)."""
    req = InternalRaftRequest(**field)
    if info is not None:
        req.header.username = info.username
        req.header.auth_revision = info.revision
    return req


class AuthRequests:
    """The member's auth: identity, checks, and the Auth service.

    ``state`` is the auth state as of the last applied entry; the server calls
    ``refresh`` after every apply batch that changed auth and after the stores
    were reloaded, so reading it costs nothing on the request path.
    """

    def __init__(self, stores: Stores, headers: Headers, applied: AppliedIndex, *, propose: Propose,
                 barrier: Callable[[], Awaitable[None]], commit_index: Callable[[], int],
                 client_cert_auth: bool, bcrypt_cost: int, timeout: float) -> None:
        self.stores = stores
        self.headers = headers
        self._applied = applied
        self._propose = propose
        self._barrier = barrier
        self._commit_index = commit_index
        self._client_cert_auth = client_cert_auth
        self._bcrypt_cost = passwords.effective_cost(bcrypt_cost)
        self._timeout = timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt")
        self._pool_slots = asyncio.Semaphore(BCRYPT_THREADS)
        self.state: AuthState = stores.auth.state()

    def refresh(self) -> None:
        self.state = self.stores.auth.state()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- who -----------------------------------------------------------------------------

    async def identify(self, creds: Credentials, *, untranslated: bool = False) -> AuthInfo | None:
        """Who ``creds`` names; None for nobody; etcd's error for a bad token."""
        if self.must_wait(creds):
            index = self.stores.auth.tokens.required_index(creds.token)
            if index > self._commit_index() + TOKEN_INDEX_AHEAD:
                raise etcd_error(auth_errors.INVALID_AUTH_TOKEN, untranslated=untranslated)
            try:
                await asyncio.wait_for(self._applied.wait(index), self._timeout)
            except asyncio.TimeoutError:
                raise etcd_error(auth_errors.INVALID_AUTH_TOKEN, untranslated=untranslated) from None
        return self.identify_now(creds, untranslated=untranslated)

    def must_wait(self, creds: Credentials) -> bool:
        """Whether ``creds`` carries a simple token whose login this member has not applied yet."""
        return bool(creds.token) and self.stores.auth.tokens.required_index(creds.token) > self._applied.index

    def identify_now(self, creds: Credentials, *, untranslated: bool = False) -> AuthInfo | None:
        """``identify`` without waiting: for credentials ``must_wait`` says are ready."""
        token = creds.token
        if not token:
            if creds.cert_cn and self._client_cert_auth:
                return identity.from_common_name(self.state, creds.cert_cn)
            return None
        try:
            return identity.from_token(self.state, self.stores.auth.tokens, token)
        except AuthError as err:
            raise etcd_error(err, untranslated=untranslated) from None

    # -- checks ----------------------------------------------------------------------------

    def precheck(self, req: InternalRaftRequest) -> None:
        """The applier's check, made before proposing against the state now."""
        state = self.state
        if state.enabled:
            try:
                checks.check_apply(state, req, self.stores.lessor.keys)
            except AuthError as err:
                raise etcd_error(err) from None

    def check(self, check: Callable[..., None], *args: Any, untranslated: bool = False) -> None:
        """Run one of ``etcdx.auth.checks`` against the current state; etcd's error if refused."""
        state = self.state
        if state.enabled:
            try:
                check(state, *args)
            except AuthError as err:
                raise etcd_error(err, untranslated=untranslated) from None

    def recheck(self, info: AuthInfo | None) -> None:
        """After a read outside the log: refuse it if the auth store moved under it."""
        try:
            checks.recheck_revision(self.state, info)
        except AuthError as err:
            raise etcd_error(err) from None

    def check_admin(self, info: AuthInfo | None, *, untranslated: bool = False) -> None:
        self.check(checks.check_admin, info, untranslated=untranslated)

    def root_info(self) -> AuthInfo | None:
        """Who the member's own lease revokes run as: root while auth is on (etcd's ``WithRoot``)."""
        state = self.state
        return checks.root_info(state) if state.enabled else None

    # -- the Auth service ------------------------------------------------------------------

    async def _write(self, info: AuthInfo | None, **field: Any) -> Any:
        req = request_for(info, **field)
        self.precheck(req)
        resp = await self._propose(req)
        self.headers.fill(resp.header)
        return resp

    async def auth_enable(self, r: rpc_pb2.AuthEnableRequest, creds: Credentials) -> rpc_pb2.AuthEnableResponse:
        return await self._write(await self.identify(creds), auth_enable=r)

    async def auth_disable(self, r: rpc_pb2.AuthDisableRequest, creds: Credentials) -> rpc_pb2.AuthDisableResponse:
        return await self._write(await self.identify(creds), auth_disable=r)

    async def user_add(self, r: rpc_pb2.AuthUserAddRequest, creds: Credentials) -> rpc_pb2.AuthUserAddResponse:
        info = await self.identify(creds)
        self.check_admin(info)
        req = rpc_pb2.AuthUserAddRequest(name=r.name, options=r.options)
        if not r.options.no_password and r.name:
            req.hashedPassword = passwords.encode_for_request(await self._hash(r.password))
        return await self._write(info, auth_user_add=req)

    async def user_change_password(self, r: rpc_pb2.AuthUserChangePasswordRequest,
                                   creds: Credentials) -> rpc_pb2.AuthUserChangePasswordResponse:
        info = await self.identify(creds)
        self.check_admin(info)
        req = rpc_pb2.AuthUserChangePasswordRequest(name=r.name)
        user = self.state.user(r.name)
        if user is not None and not user.options.no_password:
            req.hashedPassword = passwords.encode_for_request(await self._hash(r.password))
        return await self._write(info, auth_user_change_password=req)

    async def user_delete(self, r: rpc_pb2.AuthUserDeleteRequest, creds: Credentials) -> rpc_pb2.AuthUserDeleteResponse:
        return await self._write(await self.identify(creds), auth_user_delete=r)

    async def user_grant_role(self, r: rpc_pb2.AuthUserGrantRoleRequest,
                              creds: Credentials) -> rpc_pb2.AuthUserGrantRoleResponse:
        return await self._write(await self.identify(creds), auth_user_grant_role=r)

    async def user_revoke_role(self, r: rpc_pb2.AuthUserRevokeRoleRequest,
                               creds: Credentials) -> rpc_pb2.AuthUserRevokeRoleResponse:
        return await self._write(await self.identify(creds), auth_user_revoke_role=r)

    async def role_add(self, r: rpc_pb2.AuthRoleAddRequest, creds: Credentials) -> rpc_pb2.AuthRoleAddResponse:
        return await self._write(await self.identify(creds), auth_role_add=r)

    async def role_delete(self, r: rpc_pb2.AuthRoleDeleteRequest, creds: Credentials) -> rpc_pb2.AuthRoleDeleteResponse:
        return await self._write(await self.identify(creds), auth_role_delete=r)

    async def role_grant_permission(self, r: rpc_pb2.AuthRoleGrantPermissionRequest,
                                    creds: Credentials) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        return await self._write(await self.identify(creds), auth_role_grant_permission=r)

    async def role_revoke_permission(self, r: rpc_pb2.AuthRoleRevokePermissionRequest,
                                     creds: Credentials) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        return await self._write(await self.identify(creds), auth_role_revoke_permission=r)

    async def _read(self, creds: Credentials, check: Callable[..., None] | None, *args: Any) -> AuthState:
        """The reads etcd answers through the log: linearizable, checked as the applier would."""
        info = await self.identify(creds)
        await self._barrier()
        if check is not None:
            self.check(check, info, *args)
        return self.state

    async def auth_status(self, r: rpc_pb2.AuthStatusRequest, creds: Credentials) -> rpc_pb2.AuthStatusResponse:
        resp = (await self._read(creds, None)).status()
        self.headers.fill(resp.header)
        return resp

    async def user_get(self, r: rpc_pb2.AuthUserGetRequest, creds: Credentials) -> rpc_pb2.AuthUserGetResponse:
        state = await self._read(creds, checks.check_user_get, r.name)
        return self._answer(state.user_get, r.name)

    async def user_list(self, r: rpc_pb2.AuthUserListRequest, creds: Credentials) -> rpc_pb2.AuthUserListResponse:
        return self._answer((await self._read(creds, checks.check_admin)).user_list)

    async def role_get(self, r: rpc_pb2.AuthRoleGetRequest, creds: Credentials) -> rpc_pb2.AuthRoleGetResponse:
        state = await self._read(creds, checks.check_role_get, r.role)
        return self._answer(state.role_get, r.role)

    async def role_list(self, r: rpc_pb2.AuthRoleListRequest, creds: Credentials) -> rpc_pb2.AuthRoleListResponse:
        return self._answer((await self._read(creds, checks.check_admin)).role_list)

    def _answer(self, read: Callable[..., Any], *args: Any) -> Any:
        try:
            resp = read(*args)
        except AuthError as err:
            raise etcd_error(err) from None
        self.headers.fill(resp.header)
        return resp

    async def authenticate(self, r: rpc_pb2.AuthenticateRequest, creds: Credentials) -> rpc_pb2.AuthenticateResponse:
        """etcd's flow: check the password, propose a login, and start over if the auth
        store changed between the check and the login being applied."""
        await self._barrier()
        deadline = asyncio.get_running_loop().time() + self._timeout
        store = self.stores.auth
        while True:
            checked = await self._off_loop(self._check_password, r.name, r.password)
            info = await self.identify(creds)
            req = request_for(info, authenticate=raft_internal_pb2.InternalAuthenticateRequest(
                name=r.name, simple_token=store.tokens.gen_prefix()))
            resp = await self._propose(req)
            if checked == self.state.revision:
                self.headers.fill(resp.header)
                return resp
            if asyncio.get_running_loop().time() > deadline:
                raise errors.TIMEOUT

    def _check_password(self, name: str, password: str) -> int:
        """On a pool thread: holding the backend keeps a swap from closing it under the read."""
        with self.stores.backend.hold():
            return self.stores.auth.check_password(name, password)

    # -- bcrypt off the loop ---------------------------------------------------------------

    async def _hash(self, password: str) -> bytes:
        return await self._off_loop(passwords.hash_password, password, self._bcrypt_cost)

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._pool_slots:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
            except AuthError as err:
                raise etcd_error(err) from None
