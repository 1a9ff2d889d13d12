"""`fleetkey capacity measure` against a real `fleetkey serve` that sheds load with 503s."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleetkey.emulate.addresses import probe_mac

from tests.serving import SITE, fleet_env, make_fleet, run_fleetkey, server_env, start_server

PROBE_MAC = probe_mac(0)  # the calibration boot's phone


def test_capacity_climbs_until_the_server_sheds_load_and_is_recorded_for_planning(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "capacity")
    make_fleet(data, env)
    server = start_server(data, env, "--http", "127.0.0.1:0", "--max-in-flight", "2")
    try:
        done = run_fleetkey(
            env,
            "capacity",
            "measure",
            "--server",
            f"{server.url}/{SITE}",
            "--start",
            "20",
            "--factor",
            "3",
            "--step-seconds",
            "1",
            "--max-steps",
            "6",
            "--json",
        )
    finally:
        server.stop()
    result = json.loads(done.stdout)
    steps = result["steps"]
    assert [s["healthy"] for s in steps[:-1]] == [True] * (len(steps) - 1)
    last = steps[-1]
    assert not last["healthy"]
    assert last["rejected"] > 0 or "p95 latency" in last["why"] or "answered" in last["why"]
    assert result["stopped"] == last["why"]
    healthy = [s["requests_per_s"] for s in steps if s["healthy"]]
    assert result["requests_per_s"] == (max(healthy) if healthy else None)
    assert [s["boots_per_s"] for s in steps] == [20 * 3**i for i in range(len(steps))]
    if healthy:
        shown = json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout)
        assert shown["requests_per_s"] == result["requests_per_s"]
        assert shown["server"] == f"{server.url}/{SITE}"


def test_a_license_lapse_and_a_firmware_change_storm_are_measured_apart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The probe's phones boot like the emulator's, from the master configuration: after a
    license lapse they read the image's header only; after a firmware change every boot
    downloads it. Each measurement says which storm it was."""
    data, env = fleet_env(tmp_path_factory, "capacity-storms")
    make_fleet(data, env)
    tree = data / "provisioning"
    (tree / "000000000000.cfg").write_text("<APPLICATION APP_FILE_PATH='fw/sip.ld'/>\n")
    (tree / "fw").mkdir()
    (tree / "fw" / "sip.ld").write_bytes(os.urandom(1_000_000))
    server = start_server(data, env)
    found = {}
    try:
        for storm in ("license-lapse", "firmware-change"):
            done = run_fleetkey(
                env, "capacity", "measure", "--server", server.url, "--storm", storm,
                "--start", "4", "--step-seconds", "1", "--max-steps", "1",
                "--models", "VVX_500:50%,SPIP_670:50%", "--json",
            )  # fmt: skip
            found[storm] = json.loads(done.stdout)
        shown = json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout)
    finally:
        stopped = server.stop()
    # read once the server has stopped, having written every record: only a license file's
    # answer waits for its record's commit, the others are written just after they are sent
    assert " 0 not recorded" in stopped
    records = json.loads(server.cli("fetches", "--limit", "100000", "--json"))
    lapse, change = found["license-lapse"], found["firmware-change"]
    assert (lapse["storm"], change["storm"]) == ("license-lapse", "firmware-change")
    assert lapse["image_bytes_per_boot"] == 0
    assert change["image_bytes_per_boot"] == 1_000_000
    assert change["requests_per_boot"] == lapse["requests_per_boot"] + 1  # the download
    assert change["steps"][0]["megabytes_per_s"] > 0 == lapse["steps"][0]["megabytes_per_s"]
    agents = {str(r["user_agent"]).split("-UA/")[0] for r in records}
    assert agents == {  # the probe's phones are the mix asked for
        "FileTransport PolycomVVX-VVX_500",
        "FileTransport PolycomSoundPointIP-SPIP_670",
    }
    if change["saved"]:  # a step this short can fall short of keeping up on a busy box
        assert shown["storm"] == "firmware-change"  # the newest


def test_a_master_named_in_the_server_url_is_what_the_probe_phones_follow(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``http://…/lab.cfg`` names the master configuration, as for ``emulate``: the probe's
    phones ask for it first and follow it (the URL's path was taken for a prefix, and every
    request went to ``/lab.cfg/…``)."""
    data, env = fleet_env(tmp_path_factory, "capacity-named-master")
    make_fleet(data, env)
    tree = data / "provisioning"
    (tree / "lab.cfg").write_text("<APPLICATION APP_FILE_PATH='fw/lab.ld'/>\n")
    (tree / "fw").mkdir()
    (tree / "fw" / "lab.ld").write_bytes(os.urandom(100_000))
    server = start_server(data, env)
    try:
        done = run_fleetkey(
            env, "capacity", "measure", "--server", f"{server.url}/lab.cfg", "--start", "2",
            "--step-seconds", "1", "--max-steps", "1", "--json",
        )  # fmt: skip
    finally:
        stopped = server.stop()
    assert " 0 not recorded" in stopped  # every record written: the master's and the image's
    records = json.loads(server.cli("fetches", "--limit", "100000", "--json"))
    result = json.loads(done.stdout)
    assert result["server"] == f"{server.url}/lab.cfg"
    paths = [str(r["path"]) for r in records]
    assert not [p for p in paths if p.startswith("/lab.cfg/")]
    boots = 1 + 2  # the calibration boot and the step's
    assert paths.count("/lab.cfg") == boots
    assert paths.count("/fw/lab.ld") == boots  # its header, read once a boot


def test_a_server_strained_at_the_first_step_is_a_failed_measurement_not_bad_input(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server that serves one request at a time, asked for 3,000 boots a second (some
    36,000 requests a second, more than one Python process answers or asks on any machine:
    at 300 a fast CI machine answered every request in under a millisecond, healthy): the
    first step is strained, which is what was measured (exit 1 with the reason and what to
    try), and nothing is saved."""
    data, env = fleet_env(tmp_path_factory, "capacity-strained")
    make_fleet(data, env)
    server = start_server(data, env, "--http", "127.0.0.1:0", "--max-in-flight", "1")
    try:
        done = run_fleetkey(
            env, "capacity", "measure", "--server", server.url, "--start", "3000",
            "--step-seconds", "1", "--max-steps", "1", "--max-p95-ms", "1", code=1,
        )  # fmt: skip
        assert "capacity of" in done.stdout  # the strained step is shown
        as_json = run_fleetkey(
            env, "capacity", "measure", "--server", server.url, "--start", "3000",
            "--step-seconds", "1", "--max-steps", "1", "--max-p95-ms", "1", "--json", code=1,
        )  # fmt: skip  # the same exit status in JSON (it exited 0)
    finally:
        server.stop()
    for said in (done.stderr, as_json.stderr):
        lines = said.splitlines()
        assert lines[-2].startswith("error: the server was strained at the first step (")
        assert lines[-1] == "hint: measure again with a lower --start"
    result = json.loads(as_json.stdout)
    assert (result["requests_per_s"], result["saved"], len(result["steps"])) == (None, False, 1)
    assert result["hint"] == "measure again with a lower --start"
    assert json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout) is None


def test_capacity_against_nothing_listening_fails_in_one_line(
    initialized: Path,
) -> None:
    env = server_env(initialized)  # a copy of the session's `fleetkey init`
    done = run_fleetkey(env, "capacity", "measure", "--server", "http://127.0.0.1:1", code=1)
    assert done.stderr.splitlines()[0] == (
        "error: nothing listens at http://127.0.0.1:1 (connection refused)"
    )
    assert json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--server", "sftp://127.0.0.1:1"],
            "is not http://HOST:PORT[/prefix] or ftp://[USER:PASSWORD@]HOST:PORT[/prefix]",
        ),
        (
            ["--server", "tftp://127.0.0.1:69"],  # TFTP has no byte range nor login to probe
            "is not http://HOST:PORT[/prefix] or ftp://",
        ),
        (["--server", "http://127.0.0.1:1", "--storm", "weather"], "--storm"),
        (["--server", "http://127.0.0.1:1", "--models", "VVX_500:50%"], "add up to 50 %"),
        (["--server", "http://127.0.0.1:1", "--factor", "1"], "--factor"),
        (["--server", "http://127.0.0.1:1", "--max-rejected", "2"], "--max-rejected"),
    ],
)
def test_bad_capacity_options_are_refused(initialized: Path, args: list[str], message: str) -> None:
    env = server_env(initialized)  # a copy of the session's `fleetkey init`
    code = 1 if "ftp" in args[1] or "--models" in args else 2
    done = run_fleetkey(env, "capacity", "measure", *args, code=code)
    assert message in done.stderr
    assert json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout) is None


def test_a_server_that_asks_every_probe_phone_to_log_in_fails_naming_the_login(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server asking every phone for its login (401: the probe has none) is not a healthy
    server: the first boot fails, no capacity is found and nothing is saved for planning (the
    probe counted a 401 as an answer and reported hundreds of requests/s). The error names
    the 401 and what to do (it advised a lower --start), and --json exits 1 as the table does
    (it exited 0)."""
    data, env = fleet_env(tmp_path_factory, "capacity-refused")
    make_fleet(data, env)
    server = start_server(data, env, "--http", "127.0.0.1:0", "--auth", "digest")
    try:
        done = run_fleetkey(
            env, "capacity", "measure", "--server", f"{server.url}/{SITE}", "--start", "5",
            "--step-seconds", "1", "--max-steps", "2", "--json", code=1,
        )  # fmt: skip
        table = run_fleetkey(env, "capacity", "measure", "--server", f"{server.url}/{SITE}", code=1)
    finally:
        server.stop()
    result = json.loads(done.stdout)
    assert (result["requests_per_s"], result["saved"], result["steps"]) == (None, False, [])
    assert result["stopped"] == (
        f"the first boot, alone, failed: GET /{SITE}/{PROBE_MAC}.cfg: 401 (the server asks "
        "every phone to log in; the probe's phones have none)"
    )
    hint = (
        "measure a server that serves phones without a login (fleetkey serve --auth off), e.g. "
        "a copy of this one"
    )
    assert result["hint"] == hint
    for said in (done.stderr, table.stderr):
        assert said.splitlines()[-2:] == [f"error: {result['stopped']}", f"hint: {hint}"]
    assert json.loads(run_fleetkey(env, "capacity", "show", "--json").stdout) is None
