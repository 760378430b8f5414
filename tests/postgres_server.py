"""The tests' PostgreSQL: a private cluster from ``lockkit._tools.pgcluster``, required in CI."""

from __future__ import annotations

import os

import pytest

from lockkit._tools.pgcluster import PostgresCluster as PostgresServer
from lockkit._tools.pgcluster import bindir

__all__ = ["PostgresServer", "require_postgres"]


def require_postgres() -> None:
    """Skip loudly without PostgreSQL; fail instead when LOCKKIT_REQUIRE_POSTGRES is set (CI)."""
    if bindir() is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not installed"
        if os.environ.get("LOCKKIT_REQUIRE_POSTGRES"):
            pytest.fail(message + " and LOCKKIT_REQUIRE_POSTGRES is set")
        pytest.skip(message, allow_module_level=True)
    if os.environ.get("LOCKKIT_REQUIRE_POSTGRES"):
        import psycopg  # noqa: F401 - a missing driver fails in CI
    else:
        pytest.importorskip("psycopg")
