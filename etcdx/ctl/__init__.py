"""Command-line tools: ``etcdxutl`` (etcdutl's snapshot commands for etcdx)."""
