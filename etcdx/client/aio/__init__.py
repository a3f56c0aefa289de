"""The asyncio face of the client: `AsyncClient` and the objects it hands out."""

from .client import AsyncClient, Stm
from .concurrency import Election, Lock, Observer
from .lease import Lease
from .watch import Watch

__all__ = ["AsyncClient", "Election", "Lease", "Lock", "Observer", "Stm", "Watch"]
