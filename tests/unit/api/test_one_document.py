"""The CLI's ``--json`` and the admin API's answer are one document, built by the result's
``to_json``: a post, its dry run, a forced post and a rollback; a site updated and removed; a
phone removed. The CLI works on a data directory, the API on a copy of it taken before, each
doing the same thing; only what differs by nature (the directory, the moment of posting) is
set aside before comparing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.datadir import DataDir
from fleetkey.authority.tokens import create_token
from fleetkey.clock import FixedClock
from fleetkey.store.database import default_url
from fleetkey.store.store import Store

from tests.helpers import Api, Fleetkey

SITE, OTHER = "100000000001", "100000000002"


@pytest.fixture
def twins(initialized: Path, fleetkey: Fleetkey, tmp_path: Path) -> Iterator[Api]:
    """Two sites, two phones of the first, two site keys of it issued (not posted): the CLI's
    data directory, and the admin API on a copy of it."""
    fleetkey("sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", "22:00-05:00")
    fleetkey("sites", "add", OTHER, "--name", "Branch", "--tz", "UTC", "--window", "22:00-05:00")
    phones = tmp_path / "phones.csv"
    phones.write_text(f"mac,site,model\n0004f2000000,{SITE},VVX_500\n0004f2000001,{SITE},VVX_500\n")
    fleetkey("phones", "import", str(phones))
    today = datetime.now(UTC).date()
    for days, name in ((400, "long.cfg"), (20, "short.cfg")):
        ends = f"{today + timedelta(days=days)}"
        fleetkey("issue", "site", SITE, "--features", "corporate-directory", "--expires", ends,
                 "--out", str(tmp_path / name))  # fmt: skip
    twin = DataDir(shutil.copytree(initialized, tmp_path / "twin"))
    store = Store(default_url(twin.root))
    context = ApiContext(twin, store, FixedClock(datetime.now(UTC)), None, dict, bytes)
    yield Api(create_app(context), create_token(twin.api_token), store, twin)
    store.close()


def comparable(document: Any, root: Path) -> Any:
    """``document`` with its data directory written ``<data>`` and no moment of posting."""
    text = json.dumps(document).replace(str(root), "<data>")
    found = json.loads(text)
    if isinstance(found, dict) and isinstance(found.get("license"), dict):
        found["license"].pop("posted_at")
    return found


def test_the_cli_and_the_api_answer_the_same_documents(
    initialized: Path, fleetkey: Fleetkey, twins: Api
) -> None:
    def both(cli: list[str], method: str, path: str, **body: Any) -> tuple[Any, Any]:
        printed = json.loads(fleetkey(*cli, "--json").stdout)
        answer = twins.ask(method, path, **body)
        assert answer.status_code == 200, answer.text
        return comparable(printed, initialized), comparable(answer.json(), twins.data.root)

    steps: list[tuple[list[str], str, str, dict[str, Any]]] = [
        (["licenses", "post", "1", "--dry-run"], "POST", "/api/licenses/1/post",
         {"json": {"dry_run": True}}),
        (["licenses", "post", "1"], "POST", "/api/licenses/1/post", {"json": {}}),
        (["licenses", "post", "2", "--force"], "POST", "/api/licenses/2/post",
         {"json": {"force": True}}),
        (["licenses", "rollback", SITE], "POST", "/api/licenses/rollback",
         {"json": {"serial": SITE}}),
        (["sites", "update", OTHER, "--window", "23:00-04:00", "--contact", "+49 30 1234"],
         "PATCH", f"/api/sites/{OTHER}", {"json": {"window": "23:00-04:00",
                                                   "contact": "+49 30 1234"}}),
        (["phones", "remove", "0004f2000001"], "DELETE", "/api/phones/0004f2000001", {}),
        (["sites", "remove", SITE, "--force"], "DELETE", f"/api/sites/{SITE}",
         {"params": {"force": "true"}}),
    ]  # fmt: skip
    printed: list[Any] = []
    for cli, method, path, body in steps:
        document, answered = both(cli, method, path, **body)
        assert document == answered, cli
        printed.append(document)
    dry_run, _, forced, rollback, update, phone, site = printed
    assert dry_run["changes"] == [
        {"slot": 0, "name": "corporate-directory", "before": None,
         "after": dry_run["license"]["expires_on"], "change": "added"}
    ]  # fmt: skip
    assert forced["losses"]
    assert rollback["replaces"] == 2
    assert update["changed"]["contact"] == {"old": None, "new": "+49 30 1234"}
    assert phone == {"removed": ["0004f2000001"], "posted_keys_kept": []}
    assert (site["phones_removed"], site["posted_keys_kept"]) == (1, [1])
