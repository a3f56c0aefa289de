"""The blocking face of the client: `Client` and the objects it hands out."""

from .client import Client, Stm
from .concurrency import Election, Lock, Observer
from .lease import Lease
from .watch import Watch

__all__ = ["Client", "Election", "Lease", "Lock", "Observer", "Stm", "Watch"]
