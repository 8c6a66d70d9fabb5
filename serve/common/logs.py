"""Log lines carry the correlation id of the request (or message) being handled."""

from __future__ import annotations

import logging
import sys

from serve.common.context import correlation_id_var

FORMAT = "%(asctime)s %(levelname)s %(name)s [cid=%(correlation_id)s] %(message)s"


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: installs one handler on the ``afisha`` logger tree."""
    root = logging.getLogger("afisha")
    root.setLevel(level.upper())
    if any(isinstance(f, CorrelationIdFilter) for h in root.handlers for f in h.filters):
        return
    handler: logging.Handler = logging.StreamHandler()
    target = getattr(sys.stderr, "_logger", None)  # Serve's replica logger, in a replica
    if isinstance(target, logging.Logger):
        handler = ToLogger(target, int(getattr(sys.stderr, "_log_level", logging.INFO)))
    handler.addFilter(CorrelationIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"afisha.{name}")


class ToLogger(logging.Handler):
    """Writes formatted records straight to another logger. Inside a Serve replica stderr is
    Serve's stand-in, which walks the whole stack for every line written to it; the same line
    handed to Serve's logger lands in the same replica log without that walk."""

    def __init__(self, target: logging.Logger, level: int) -> None:
        super().__init__()
        self.target = target
        self.target_level = level

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.log(self.target_level, self.format(record))
        except Exception:
            self.handleError(record)
