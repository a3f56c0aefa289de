"""mvcc errors, carrying etcd's exact messages (clients match on the text)."""


class CompactedError(Exception):
    """The requested revision is older than the compact revision."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__("mvcc: required revision has been compacted")
        self.compact_revision = compact_revision


class FutureRevisionError(Exception):
    """The requested revision is newer than the current revision."""

    def __init__(self, current_revision: int) -> None:
        super().__init__("mvcc: required revision is a future revision")
        self.current_revision = current_revision
