"""Helpers for the dashboard's browser tests: a seeded fleet behind a real `fleetkey serve`
(sites, 2,000 phones, licenses, real fetches and uploads, alerts, a rollout whose phones are
Kamailio), and signing a Playwright page in. Screenshots go to ``FLEETKEY_SCREENSHOTS`` when
set, else to a temporary folder."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
from playwright.sync_api import Page

from tests.serving import RunningServer, fleetkey_in_process, window_around_now

CHROMIUM: Final = "/usr/bin/chromium"
SITES: Final = (  # serial, name, phones, days its site license has left
    ("100000000001", "HQ", 1200, 20),
    ("100000000002", "Branch", 770, 100),
    ("100000000003", "Lab", 30, 10),
)
FETCHED: Final = 40  # phones of HQ that fetch their site license
HOSTILE_MAC: Final = "0004f2000007"
HOSTILE_AGENT: Final = (
    "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2000007) "
    "<script>window.pwned=1</script> Type/Application"
)
HOSTILE_LOG: Final = b"boot ok\n<script>window.pwned=2</script>\n<img src=x onerror=alert(1)>\n"


def mac_of(site_index: int, number: int) -> str:
    return f"0004f{site_index + 2}{number:06x}"


def seed_fleet(data: Path, env: dict[str, str], sip_port: int) -> str:
    """Through the CLI, in this process (a process a command cost ~0.6 s of CPU each): the
    sites, 2,000 phones (Lab's with SIP contacts at ``sip_port``), a posted site license each,
    a successor for Lab with rollout 1 planned for it, a phone key, alerts checked; the admin
    token."""
    today = datetime.now(UTC).date()

    def cli(env: dict[str, str], *args: str) -> str:
        return fleetkey_in_process(env, *args).stdout

    token: str = json.loads(cli(env, "init", "--json"))["api_token"]
    rows = ["mac,site,model,firmware,contact"]
    for index, (serial, name, phones, days) in enumerate(SITES):
        cli(env, "sites", "add", serial, "--name", name, "--tz", "UTC", "--window",
            window_around_now())  # fmt: skip
        for number in range(phones):
            mac = mac_of(index, number)
            model = "VVX_500" if number % 3 else "VVX_411"
            firmware = "5.9.7" if number % 4 else "6.4.1"
            contact = f"sip:{mac}@127.0.0.1:{sip_port}" if name == "Lab" else ""
            rows.append(f"{mac},{serial},{model},{firmware},{contact}")
        cli(env, "issue", "site", "--serial", serial, "--features", "corporate-directory",
            "--expires", str(today + timedelta(days=days)))  # fmt: skip
    (data.parent / "phones.csv").write_text("\n".join(rows) + "\n")
    cli(env, "phones", "import", str(data.parent / "phones.csv"))
    cli(env, "issue", "phone", "--mac", HOSTILE_MAC, "--features", "vqmon", "--expires", "never")
    cli(env, "issue", "site", "--serial", SITES[2][0], "--features", "corporate-directory",
        "--expires", str(today + timedelta(days=400)))  # fmt: skip
    successor = json.loads(cli(env, "licenses", "list", "--json"))[-1]["id"]
    cli(env, "rollout", "plan", "--license", str(successor), "--capacity", "5",
        "--boot-requests", "1", "--slot", "5")  # fmt: skip
    cli(env, "alerts")
    return token


@dataclass
class Fleet:
    server: RunningServer
    token: str
    shots: Path

    def fetch_and_upload(self) -> None:
        """Real requests: FETCHED phones of HQ fetch their site license; then the hostile phone
        uploads a log holding a script, with a User-Agent holding one (the server names it by
        the file name, and keeps the User-Agent as the phone's last)."""
        with httpx.Client(base_url=self.server.url) as client:
            for number in range(FETCHED):
                mac = mac_of(0, number)
                agent = (
                    f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{mac}) Type/Application"
                )
                answer = client.get("/000000000000-license.cfg", headers={"user-agent": agent})
                assert answer.status_code == 200
            stored = client.put(
                f"/{HOSTILE_MAC}-app.log",
                content=HOSTILE_LOG,
                headers={"user-agent": HOSTILE_AGENT},
            )
            assert stored.status_code in (201, 204)

    def url(self, path: str) -> str:
        return self.server.url + path

    def json(self, *args: str) -> Any:
        return json.loads(self.server.cli(*args, "--json"))

    def shoot(self, page: Page, name: str) -> None:
        folder = Path(os.environ.get("FLEETKEY_SCREENSHOTS") or self.shots)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Page, fleet: Fleet, path: str = "/ui/") -> None:
    """Open ``path``, land on the sign-in page, sign in with the token, arrive at ``path``."""
    page.goto(fleet.url(path))
    assert re.search(r"/ui/login\?next=", page.url), page.url
    page.fill("#token", fleet.token)
    page.click("button[type=submit]")
    page.wait_for_url(fleet.url(path))


def number(page: Page, selector: str) -> int:
    return int(page.locator(selector).first.inner_text().split()[0])
