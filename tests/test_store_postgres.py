"""PostgreSQL-only store behaviour: which driver a URL gets, and the schema on a real server.

The shared behaviour (round trip, idempotence, racing writers, killed writer...) runs on PostgreSQL too:
tests/test_store.py parametrizes its `store` over SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from steelscan.inspection.records import Piece
from steelscan.store import Store


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_url_uses_psycopg3(pg_url, scheme):
    # Plain postgresql:// would be psycopg2 in SQLAlchemy, which is not installed.
    s = Store(make_url(pg_url).set(drivername=scheme).render_as_string(hide_password=False))
    try:
        assert s.engine.dialect.driver == "psycopg"
        s.open_coil("C1", {})
        assert s.add_frame("C1", 0, [Piece(0, "scratch", 0.9, (0, 0, 4, 4), 16)])
        assert s.frames_done("C1") == {0}
    finally:
        s.close()


def test_schema_on_postgresql(pg_url):
    s = Store(pg_url)
    try:
        cols = {t: {c["name"]: c["type"] for c in inspect(s.engine).get_columns(t)} for t in ("coils", "pieces")}
    finally:
        s.close()
    assert cols["pieces"]["id"].python_type is int and type(cols["pieces"]["id"]).__name__ == "BIGINT"
    assert type(cols["coils"]["grade"]).__name__ == "JSON"


def test_stations_starting_together_on_an_empty_database(pg_url):
    """Several stores creating the tables at once on a fresh database: none fails (advisory lock)."""
    import threading

    errors, stores = [], []

    def start():
        try:
            stores.append(Store(pg_url))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    stores[0].open_coil("C1", {"geometry": {}})
    assert stores[3].coil("C1")["status"] == "open"
    for s in stores:
        s.close()
