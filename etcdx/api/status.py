"""Turning server errors into gRPC statuses with etcd's codes and messages."""

from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable, TypeVar

import grpc

from etcdx.server.errors import EtcdError

log = logging.getLogger("etcdx.api")

T = TypeVar("T")


async def abort(context: grpc.aio.ServicerContext, err: EtcdError) -> None:
    await context.abort(grpc.StatusCode[err.code], err.message)


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wrap a unary handler: EtcdError becomes its gRPC status; anything else is logged and INTERNAL."""

    @functools.wraps(fn)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except EtcdError as err:
            await context.abort(grpc.StatusCode[err.code], err.message)
            raise  # not reached: abort raises
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", fn.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "etcdserver: internal error")
            raise

    return handler
