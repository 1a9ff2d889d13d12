"""bench/ui.py's bulk writer of fetch records: what it stores is what the writer would have.

The benchmark builds 10 million records without the writer's per-batch upserts: raw rows in
time order (``COPY`` on PostgreSQL), the per-phone state folded as it goes and written once.
The pages it times are only worth timing if that store is one the server could have written:
the state agrees with the raw records (``db check``'s comparison) and the records read back.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from sqlalchemy import func, select

from fleetkey.store import fetches, statecheck
from fleetkey.store.phonestate import SERVED
from fleetkey.store.schema import FetchRow, PhoneFileRow
from fleetkey.store.store import Store

BENCH = Path(__file__).resolve().parents[3] / "bench" / "ui.py"
DIGESTS = ["a" * 64, "b" * 64, None]  # the third site has no posted key


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ui", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bulk_records_agree_with_the_per_phone_state(store: Store) -> None:
    module = bench()
    module.CHUNK = 700  # several chunks, the last one short
    module.write_records(store, DIGESTS, 90, 2_500)
    with store.engine.connect() as connection:
        result = statecheck.check(connection)
    assert result.differences == []
    # each phone: its newest record, its license request and, at the two sites with a key,
    # the version it was served
    assert (result.phones, result.entries) == (90, 90 + 90 + 60)
    with store.transaction() as session:
        records = session.scalar(select(func.count()).select_from(FetchRow))
        served = dict(
            session.execute(
                select(PhoneFileRow.digest, func.count())
                .where(PhoneFileRow.kind == SERVED)
                .group_by(PhoneFileRow.digest)
            ).all()
        )
        newest = fetches.newest(session, fetches.FetchFilter(mac="0004f2000004"), 1)[0][0]
    assert records == 2_500
    assert served == {"a" * 64: 30, "b" * 64: 30}  # phone n serves DIGESTS[n % 3]
    assert newest.path in ("/000000000000-license.cfg", "/0004f2000004.cfg")
    assert newest.digest in ("b" * 64, None)
