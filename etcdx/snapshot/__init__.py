"""Snapshots in etcd's format: export, import, status and restore.

- ``export``: an etcdx backend → an etcd (bbolt) database, streamed.
- ``stream``: the Maintenance.Snapshot stream (export + SHA-256 trailer).
- ``load``: an etcd database → a fresh etcdx backend (key index and lease
  attachments rebuilt).
- ``status``, ``restore``, ``integrity``: what ``etcdxutl snapshot`` does.
- ``layout``: etcd's buckets and how etcdx's map onto them.

This package sits beside ``etcdx.server``: it knows the server's storage
formats (members, alarms) and its bootstrap, and the server calls
``stream.snapshot_chunks``.
"""
