"""Emulated phones follow the master configuration a real `fleetkey serve` gives them
(domain.md §4-§5): the files they ask for, in order, and the firmware they download only when
the server's image is not the one they installed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.emulate.addresses import phone_address

from tests.helpers import free_udp_port, sip_exchange, sip_request
from tests.serving import (
    MAC,
    SITE,
    SP_MAC,
    RunningServer,
    fleet_env,
    fleetkey_command,
    make_fleet,
    records,
    start_ftp,
    start_server,
    wait_for,
)

SLOW_S = 40.0
VVX = MAC  # a VVX 500 with a phone license
SPIP = SP_MAC  # a SoundPoint IP 670
PHONES_CSV = "mac,site,model,firmware\n" + "".join(
    f"{mac},{SITE},{model},{firmware}\n"
    for mac, model, firmware in ((VVX, "VVX_500", "6.3.1.8427"), (SPIP, "SPIP_670", "4.0.15.1047"))
)
MASTER = """<?xml version="1.0" standalone="yes"?>
<!-- a real-shaped master configuration (domain.md §4, S2-S4) -->
<APPLICATION APP_FILE_PATH="firmware/sip.ld" CONFIG_FILES="site.cfg, [PHONE_MAC_ADDRESS]-ext.cfg"
 MISC_FILES="" LOG_FILE_DIRECTORY="logs" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY=""
 LICENSE_DIRECTORY="licenses">
  <APPLICATION_VVX500 APP_FILE_PATH_VVX500="firmware/vvx500.ld"/>
</APPLICATION>
"""


def write_tree(data: Path) -> Path:
    tree = data / "provisioning"
    for name in ("000000000000.cfg", "2345-12500-001.sip.ld"):  # make_fleet's
        (tree / name).unlink()
    (tree / "000000000000.cfg").write_text(MASTER)
    (tree / "firmware").mkdir()
    (tree / "firmware" / "sip.ld").write_bytes(os.urandom(300_000))
    (tree / "firmware" / "vvx500.ld").write_bytes(os.urandom(200_000))
    (tree / "site.cfg").write_text("<site/>\n")
    (tree / f"{VVX}-ext.cfg").write_text("<ext/>\n")
    return tree


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "master")
    make_fleet(data, env, PHONES_CSV)
    write_tree(data)
    running = start_server(data, env)
    yield running
    running.stop()


def app_logs(server: RunningServer, mac: str) -> int:
    return sum(1 for r in records(server, mac) if str(r["path"]).endswith(f"{mac}-app.log"))


def reboot(server: RunningServer, sip_port: int, boots: int) -> None:
    """Check-sync both phones (reboot=true) and wait until each has booted ``boots`` times."""
    notify = sip_request("NOTIFY", sip_port, event="check-sync;reboot=true")
    for address in (phone_address(VVX), phone_address(SPIP)):
        assert (sip_exchange(address, sip_port, notify) or "").startswith("SIP/2.0 200 OK")
    wait_for(lambda: min(app_logs(server, VVX), app_logs(server, SPIP)) >= boots, SLOW_S)


def boots_of(phone: dict[str, object]) -> list[list[tuple[str, str, int]]]:
    """The phone's fetches, (method, name, status), cut into boots at each first request."""
    boots: list[list[tuple[str, str, int]]] = []
    fetches = phone["fetches"]
    assert isinstance(fetches, list)
    for fetch in fetches:
        if fetch["name"] == f"{phone['mac']}.cfg":
            boots.append([])
        boots[-1].append((fetch["method"], fetch["name"], fetch["status"]))
    return boots


def inventory(server: RunningServer) -> list[tuple[object, ...]]:
    phones = json.loads(server.cli("phones", "list", "--json"))
    return [(p["mac"], p["site"], p["model"], p["firmware"]) for p in phones]


def test_phones_follow_the_master_and_download_a_new_image_once(server: RunningServer) -> None:
    """The inventory's phones (model, firmware, site; read only) boot as their master
    configuration says; a new image on the server is downloaded once, at the next boot."""
    sip_port = free_udp_port()
    report = server.data.parent / "report.json"
    before = inventory(server)
    process = subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server", server.url, "--from-inventory",
         "--sip-port", str(sip_port),
         "--duration", "60", "--report", str(report), "--json"],
        env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: min(app_logs(server, VVX), app_logs(server, SPIP)) >= 1, SLOW_S)
        tree = server.data / "provisioning"
        (tree / "firmware" / "vvx500.ld").write_bytes(os.urandom(250_000))  # a new image
        reboot(server, sip_port, 2)
        reboot(server, sip_port, 3)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    phones = {p["mac"]: p for p in json.loads(report.read_text())["phones"]}
    vvx = boots_of(phones[VVX])
    assert vvx[0] == [
        ("GET", f"{VVX}.cfg", 404),
        ("GET", "000000000000.cfg", 200),
        ("GET", "firmware/3111-44500-001.vvx500.ld", 404),  # the part-number image first
        ("GET", "firmware/vvx500.ld", 206),  # its header: the version installed
        ("PUT", f"logs/{VVX}-boot.log", 201),
        ("GET", "site.cfg", 200),
        ("GET", f"{VVX}-ext.cfg", 200),  # [PHONE_MAC_ADDRESS] expanded
        ("GET", f"{VVX}-phone.cfg", 404),
        ("GET", f"{VVX}-web.cfg", 404),
        ("GET", "licenses/000000000000-license.cfg", 200),
        ("GET", f"licenses/{VVX}-license.cfg", 200),
        ("GET", f"{VVX}-directory.xml", 200),  # make_fleet's
        ("GET", "000000000000-directory.xml", 404),
        ("PUT", f"logs/{VVX}-app.log", 201),
    ]
    images = [[f for f in boot if f[1] == "firmware/vvx500.ld"] for boot in vvx[:3]]
    assert images == [
        [("GET", "firmware/vvx500.ld", 206)],
        [("GET", "firmware/vvx500.ld", 206), ("GET", "firmware/vvx500.ld", 200)],  # new: once
        [("GET", "firmware/vvx500.ld", 206)],  # installed: not again
    ]
    assert phones[VVX]["firmware"]["downloads"] == 1
    assert phones[VVX]["firmware"]["bytes"] == 250_000
    spip = boots_of(phones[SPIP])
    assert [f[1] for f in spip[0][:4]] == [
        f"{SPIP}.cfg",
        "000000000000.cfg",
        "firmware/2345-12670-001.sip.ld",
        "firmware/sip.ld",  # the common APP_FILE_PATH: no override for its model
    ]
    assert f"{SPIP}-ext.cfg" in [f[1] for f in spip[0]]  # asked, and not there: 404
    assert phones[SPIP]["firmware"]["downloads"] == 0  # its image never changed
    assert inventory(server) == before  # firmware as the inventory says: nothing overwritten
    assert phones[VVX]["installed"]["phone"]["slots"]  # its phone license, from licenses/
    agents = {str(r["user_agent"]) for r in records(server, SPIP)}
    assert agents == {
        "FileTransport PolycomSoundPointIP-SPIP_670-UA/4.0.15.1047 Emulated/fleetkey",  # no Type/
        "FileTransport PolycomSoundPointIP-SPIP_670-UA/4.0.15.1047 Type/Application"
        " Emulated/fleetkey",
    }


def test_over_tftp_a_fleet_on_another_image_downloads_the_served_one_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """--new-firmware: the phones run another image than the server's, so their first boot
    reads the header (RRQ with tsize, ended after one block) and downloads the image."""
    data, env = fleet_env(tmp_path_factory, "master-tftp")
    make_fleet(data, env, PHONES_CSV)
    write_tree(data)
    server = start_server(data, env, "--http", "off", "--tftp", "127.0.0.1:0", "--tftp-uploads")
    report = data.parent / "report.json"
    try:
        subprocess.run(
            [*fleetkey_command(), "emulate", "--server", f"tftp://127.0.0.1:{server.port}",
             "--from-inventory", "--new-firmware", "--until-booted", "--duration", "60",
             "--sip-port", "0", "--report", str(report), "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    finally:
        server.stop()
    phones = {p["mac"]: p for p in json.loads(report.read_text())["phones"]}
    for mac, image, size in (
        (VVX, "firmware/vvx500.ld", 200_000),
        (SPIP, "firmware/sip.ld", 300_000),
    ):
        fetched = [(f["status"], f["bytes"]) for f in phones[mac]["fetches"] if f["name"] == image]
        assert fetched == [(206, 1428), (200, size)], mac  # one TFTP block, then all of it
        assert phones[mac]["firmware"]["downloads"] == 1
        assert phones[mac]["errors"] == []


def test_over_ftp_a_fleet_on_another_image_finds_and_downloads_the_served_one_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Over FTP the header is read by SIZE and a RETR cut short; an image name the tree does
    not have (SIZE's 550 "not retrievable") is a 404, so the phone goes on to the next name
    (it took it for a refusal and downloaded nothing, exit 0: an administrator's trial)."""
    data, env = fleet_env(tmp_path_factory, "master-ftp")
    make_fleet(data, env, PHONES_CSV)
    write_tree(data)
    server = start_ftp(data, env, "--ftp-shared-login", "PlcmSpIp:PlcmSpIp")
    report = data.parent / "report.json"
    try:
        done = subprocess.run(
            [*fleetkey_command(), "emulate", "--server", f"ftp://127.0.0.1:{server.port}",
             "--from-inventory", "--new-firmware", "--until-booted", "--duration", "60",
             "--sip-port", "0", "--report", str(report), "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    finally:
        server.running.stop()
    assert "never awaited" not in done.stderr
    phones = {p["mac"]: p for p in json.loads(report.read_text())["phones"]}
    for mac, image in ((VVX, "firmware/vvx500.ld"), (SPIP, "firmware/sip.ld")):
        statuses = [f["status"] for f in phones[mac]["fetches"] if f["name"] == image]
        assert statuses == [206, 200], mac  # the header, then all of it
        assert phones[mac]["firmware"]["downloads"] == 1
        assert phones[mac]["errors"] == []


@pytest.mark.parametrize("auth", ["digest", "basic"])
def test_phones_log_in_with_their_credentials_and_a_phone_without_gets_401(
    tmp_path_factory: pytest.TempPathFactory, auth: str
) -> None:
    data, env = fleet_env(tmp_path_factory, f"master-{auth}")
    make_fleet(
        data,
        env,
        f"mac,site,model,user,password\n{VVX},{SITE},VVX_500,u{VVX},pw-{VVX}\n"
        f"{SPIP},{SITE},SPIP_670,u{SPIP},pw-{SPIP}\n",
    )
    write_tree(data)
    credentials = data.parent / "credentials.csv"
    credentials.write_text(f"mac,user,password\n{VVX},u{VVX},pw-{VVX}\n")  # not SPIP's
    server = start_server(data, env, "--http", "127.0.0.1:0", "--auth", auth)
    report = data.parent / "report.json"
    try:
        done = subprocess.run(
            [*fleetkey_command(), "emulate", "--server", server.url, "--from-inventory",
             "--credentials", str(credentials), "--until-booted", "--duration", "60",
             "--sip-port", "0", "--report", str(report), "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    finally:
        server.stop()
    assert json.loads(done.stdout)["phones_failed"] == 1
    phones = {p["mac"]: p for p in json.loads(report.read_text())["phones"]}
    statuses = {f["name"]: f["status"] for f in phones[VVX]["fetches"]}
    assert statuses[f"licenses/{VVX}-license.cfg"] == 200  # its own, through its login
    assert statuses["firmware/vvx500.ld"] == 206
    assert phones[VVX]["installed"]["phone"] is not None
    assert {f["status"] for f in phones[SPIP]["fetches"]} == {401}
