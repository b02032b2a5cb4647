"""Shared fixtures. Tests never touch the network or the user's own data directory.

The store tests run against SQLite by default; with ``REJOINDER_TEST_POSTGRES_URL`` set to a
PostgreSQL server URL (``.ci/run`` starts one), every test that asks for ``db_url`` gets a fresh
database on that server instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
DOCTOR_1966 = DATA / "eliza" / "doctor_1966.txt"
CONVERSATION_1966 = DATA / "eliza" / "conversation_1966.txt"

POSTGRES_URL = os.environ.get("REJOINDER_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REJOINDER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REJOINDER_DB_URL", raising=False)
    monkeypatch.delenv("REJOINDER_MAX_MESSAGE_CHARS", raising=False)


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"rejoinder_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[object]:
    from rejoinder.store import Store

    s = Store(db_url)
    yield s
    s.close()


def conversation_1966() -> list[tuple[str, str]]:
    lines = CONVERSATION_1966.read_text(encoding="utf-8").splitlines()
    users = [line.removeprefix("USER: ") for line in lines if line.startswith("USER: ")]
    elizas = [line.removeprefix("ELIZA: ") for line in lines if line.startswith("ELIZA: ")]
    assert len(users) == len(elizas) == 15
    return list(zip(users, elizas, strict=True))
