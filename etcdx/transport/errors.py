"""The errors a caller of the transport sees."""

from __future__ import annotations


class TransportError(Exception):
    """The peer could not be reached, rejected the connection, or did not answer in time."""


class RemoteError(TransportError):
    """The peer's request handler answered with an error; ``message`` is its text.

    A request handler raises it to send ``message`` back to the caller, where it
    is raised again (so the caller can tell "the leader said no" from "no answer").
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
