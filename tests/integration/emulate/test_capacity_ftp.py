"""`fleetkey capacity measure` over FTP against a real `fleetkey serve --ftp`.

The probe's phones are in no inventory, so they log in with the shared login (the URL's, else
Polycom's factory PlcmSpIp), one FTP session per boot; every RETR and STOR of theirs is a
fetch record over FTP, and a login the server refuses gives no capacity and saves nothing.
Being in no site, they get 403 for a site's prefix over FTP (a session is one phone, and gets
its own site's files only): the probe asks the tree's root.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serving import (
    SHARED_LOGIN,
    FtpServer,
    fleet_env,
    fleetkey_command,
    make_fleet,
    run_fleetkey,
    server_env,
    start_ftp,
    wait_for,
)

FIRMWARE = "/2345-12500-001.sip.ld"  # make_fleet's 20 MiB image, the master's below
STEP = ("--start", "4", "--step-seconds", "1", "--max-steps", "1", "--json")


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    data, env = fleet_env(tmp_path_factory, "capacity-ftp")
    make_fleet(data, env)
    master = f"<APPLICATION APP_FILE_PATH='{FIRMWARE[1:]}'/>\n"
    (data / "provisioning" / "000000000000.cfg").write_text(master)
    server = start_ftp(data, env, "--ftp-shared-login", ":".join(SHARED_LOGIN))
    yield server
    server.running.stop()


def measure(server: FtpServer, url: str, *args: str) -> dict[str, object]:
    return measured(server, url, *args)[0]


def measured(server: FtpServer, url: str, *args: str) -> tuple[dict[str, object], str]:
    """The --json result and what was said on stderr; a measurement that found no capacity
    exits 1 in JSON as in the table (it exited 0 in JSON), one that found one exits 0."""
    done = subprocess.run(
        [*fleetkey_command(), "capacity", "measure", "--server", url, *args],
        env=server.running.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found: dict[str, object] = json.loads(done.stdout)
    assert done.returncode == (1 if found["requests_per_s"] is None else 0), done.stderr
    return found, done.stderr


def probe_records(server: FtpServer) -> list[dict[str, object]]:
    every = json.loads(server.running.cli("fetches", "--limit", "100000", "--json"))
    return [r for r in every if str(r["mac"] or "").startswith("02")]


def settled_probe_records(
    server: FtpServer, complete: Callable[[list[dict[str, object]]], bool]
) -> list[dict[str, object]]:
    """The probe's records once ``complete`` holds: only a license file's ``226`` waits for its
    record's commit, so a configuration's or an image's record can be written just after the
    probe's last boot has ended (CI once read 4 of the 5 image downloads)."""
    wait_for(lambda: complete(probe_records(server)))
    return probe_records(server)


def test_a_license_lapse_storm_over_ftp_is_measured_and_every_transfer_recorded(
    ftp: FtpServer,
) -> None:
    user, password = SHARED_LOGIN
    url = f"ftp://{user}:{password}@127.0.0.1:{ftp.port}"
    result = measure(ftp, url, *STEP)
    assert result["server"] == f"ftp://127.0.0.1:{ftp.port}"  # no password kept
    assert result["storm"] == "license-lapse"
    assert result["image_bytes_per_boot"] == 0
    steps = result["steps"]
    assert isinstance(steps, list)
    assert len(steps) == 1
    assert steps[0]["boots_per_s"] == 4
    assert steps[0]["errors"] == 0
    assert steps[0]["requests"] >= 4 * int(str(result["requests_per_boot"]))
    # the calibration boot and the step's 4, each its own phone, each asking its own .cfg
    records = settled_probe_records(ftp, lambda found: len(configs_of(found)) >= 5)
    assert {r["protocol"] for r in records} == {"ftp"}
    configs = configs_of(records)
    assert len(configs) == 5
    # the calibration boot reads the header (a RETR cut short); the step's phones hold it in
    # their flash, as phones that ran this image before the lapse: SIZE and MDTM, no RETR
    headers = [r for r in records if r["path"] == FIRMWARE]
    assert len(headers) == 1
    assert 0 < int(str(headers[0]["bytes"])) < 20 * 1024 * 1024
    # saved or not (a step this short can fall short of keeping up on a busy box), the store
    # holds no password: the saved target is the redacted URL, else nothing was saved
    shown = ftp.running.cli("capacity", "show", "--json")
    assert password not in shown
    expected = {"server": f"ftp://127.0.0.1:{ftp.port}"} if result["saved"] else None
    saved = json.loads(shown)
    assert (saved and {"server": saved["server"]}) == expected


def test_a_firmware_change_storm_over_ftp_downloads_the_image_every_boot(
    ftp: FtpServer,
) -> None:
    url = f"ftp://127.0.0.1:{ftp.port}"  # Polycom's factory login
    result = measure(ftp, url, "--storm", "firmware-change", *STEP)
    assert result["storm"] == "firmware-change"
    assert result["image_bytes_per_boot"] == 20 * 1024 * 1024
    records = settled_probe_records(ftp, lambda found: len(downloads_of(found)) >= 5)
    assert len(downloads_of(records)) == 5


def configs_of(records: list[dict[str, object]]) -> set[object]:
    return {r["mac"] for r in records if r["path"] == f"/{r['mac']}.cfg"}


def downloads_of(records: list[dict[str, object]]) -> list[dict[str, object]]:
    whole = 20 * 1024 * 1024
    return [
        r for r in records if r["path"] == FIRMWARE and r["status"] == 200 and r["bytes"] == whole
    ]


@pytest.mark.parametrize(
    ("where", "cause", "hint"),
    [
        (
            "ftp://someone:wrong@127.0.0.1:{port}",
            "(the FTP server refused the probe's shared login)",
            "hint: give the server's shared login in the URL (ftp://USER:PASSWORD@HOST:PORT), "
            "or start the server with --ftp-shared-login USER:PASSWORD",
        ),
        # (a site prefix no longer refuses the probe's phones: a phone the inventory lacks is
        # placed by the path's site over FTP as over HTTP, and the unknown policy rules)
    ],
    ids=["a login the server refuses"],
)
def test_an_ftp_probe_the_server_refuses_fails_naming_the_cause_and_saves_nothing(
    ftp: FtpServer, where: str, cause: str, hint: str
) -> None:
    """A lower --start cures neither (the advice it was given): the error names the refused
    request, the cause and what to do, and --json exits 1 as the table does."""
    before = ftp.running.cli("capacity", "show", "--json")
    result, said = measured(ftp, where.format(port=ftp.port), *STEP)
    assert (result["requests_per_s"], result["saved"], result["steps"]) == (None, False, [])
    stopped = str(result["stopped"])
    assert stopped.startswith("the first boot, alone, failed: ")
    assert stopped.endswith(cause)
    lines = said.splitlines()
    assert lines[-2] == f"error: {stopped}"
    assert lines[-1] == hint == f"hint: {result['hint']}"
    assert "lower --start" not in said
    assert ftp.running.cli("capacity", "show", "--json") == before


def test_an_ftp_server_without_the_shared_login_is_named_as_the_cause(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server started without --ftp-shared-login refuses the probe's factory login (530):
    the error says the login was refused and how to give one, not to lower --start."""
    data, env = fleet_env(tmp_path_factory, "capacity-ftp-nologin")
    make_fleet(data, env)
    server = start_ftp(data, env)
    try:
        result, said = measured(server, f"ftp://127.0.0.1:{server.port}", *STEP)
    finally:
        server.running.stop()
    assert result["requests_per_s"] is None
    assert str(result["stopped"]).endswith("(the FTP server refused the probe's shared login)")
    assert " 530 " in str(result["stopped"])  # the server's own words
    assert said.splitlines()[-1].startswith("hint: give the server's shared login in the URL")
    assert json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1:1", "error: nothing listens at ftp://127.0.0.1:1 (connection refused)"),
        ("ftp://127.0.0.1:99999", "error: --server 'ftp://127.0.0.1:99999': Port out of range"),
        ("ftp:///site", "error: --server 'ftp:///site' is not http://HOST:PORT[/prefix] or"),
    ],
)
def test_bad_ftp_servers_are_refused_in_one_line_and_nothing_is_saved(
    initialized: Path, url: str, message: str
) -> None:
    env = server_env(initialized)  # a copy of the session's `fleetkey init`
    done = run_fleetkey(env, "capacity", "measure", "--server", url, code=1)
    assert done.stderr.splitlines()[0].startswith(message)
    assert json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout) is None
