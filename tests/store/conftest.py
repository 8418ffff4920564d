"""A store per test, on SQLite (a temp file) and on PostgreSQL (a throwaway database).

PostgreSQL comes from ``LABELPLAN_TEST_PG_URL`` (default: the local server,
``postgresql://postgres@127.0.0.1:5432/postgres``). These tests are marked ``postgres``; on a
machine without PostgreSQL run ``pytest -m "not postgres"``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelplan.store import Store, open_store

PG_ADMIN_URL = os.environ.get(
    "LABELPLAN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    import psycopg

    name = f"labelplan_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}). Start it, set LABELPLAN_TEST_PG_URL, "
            'or run pytest -m "not postgres".'
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "labelplan.sqlite3")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
