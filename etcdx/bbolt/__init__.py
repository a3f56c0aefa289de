"""bbolt database files (etcd's backend format), read and written in Python.

No maintained PyPI library reads and writes bbolt files (the one port there,
``boltdb`` 0.0.2, is a 2020 in-memory port without the meta checksum or a
streaming writer), so the format is implemented here from bbolt's documented
layout: ``format`` (pages, elements, meta), ``writer`` (one pass, bottom-up,
bounded memory) and ``reader`` (mmap, checked page by page).
"""

from etcdx.bbolt.reader import Bucket, CorruptDatabaseError, Reader
from etcdx.bbolt.writer import BucketWriter, Writer

__all__ = ["Bucket", "BucketWriter", "CorruptDatabaseError", "Reader", "Writer"]
