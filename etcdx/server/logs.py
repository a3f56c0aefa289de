"""Structured logs: one JSON object per line, with etcd's (zap's) field names."""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "dpanic": logging.CRITICAL, "panic": logging.CRITICAL, "fatal": logging.CRITICAL}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
          logging.CRITICAL: "fatal"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "logger": record.name,
            "caller": f"{record.module}:{record.lineno}",
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str, outputs: list[str]) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    for out in outputs or ["stderr"]:
        if out == "stderr" or out == "default":
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
        elif out == "stdout":
            handler = logging.StreamHandler(sys.stdout)
        else:
            handler = logging.FileHandler(out)
        handler.setFormatter(JSONFormatter())
        root.addHandler(handler)
