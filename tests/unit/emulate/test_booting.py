"""One emulated boot without a socket (``emulate.booting.run_boot`` over an
``InMemoryTransport``): the order of its requests, the fallbacks when a master is missing or
broken, adopting and downloading firmware images, and a fleet's retries after a 503."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

from fleetkey.clock import FixedClock
from fleetkey.core.device.boot import FileRequest
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.signing import TrustedKeys
from fleetkey.emulate.booting import BootOutcome, Flash, run_boot
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.fleet import Fleet
from fleetkey.emulate.phone import EmulatedPhone
from fleetkey.emulate.transport import Reply
from fleetkey.testing import InMemoryTransport

MAC = "020000100000"
T0 = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)
MASTER = b"""<APPLICATION APP_FILE_PATH="fw/sip.ld"
 CONFIG_FILES="site.cfg, [PHONE_MAC_ADDRESS]-x.cfg" LICENSE_DIRECTORY="lic"
 LOG_FILE_DIRECTORY="logs" CONTACTS_DIRECTORY="" OVERRIDES_DIRECTORY="">
  <APPLICATION_VVX500 APP_FILE_PATH_VVX500="fw/vvx.ld"/>
</APPLICATION>"""
IMAGE = os.urandom(5000)


def boot(
    transport: InMemoryTransport,
    flash: Flash | None = None,
    config: PhoneConfig | None = None,
    named: str | None = None,
) -> BootOutcome:
    async def exchange(
        request: FileRequest, body: bytes, agent: str, first: int | None, keep: bool
    ) -> Reply | None:
        if request.method == "PUT":
            return await transport.put(request.name, body, user_agent=agent)
        return await transport.fetch(request.name, user_agent=agent, first_bytes=first, keep=keep)

    return asyncio.run(
        run_boot(
            config or PhoneConfig(MAC),
            flash if flash is not None else Flash(),
            exchange,
            licenses=True,
            named_master=named,
            now=lambda: T0,
        )
    )


def asked(transport: InMemoryTransport) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _, _ in transport.requests]


class TestOrder:
    def test_a_boot_follows_its_master_updater_first_then_the_application(self) -> None:
        files = {"000000000000.cfg": MASTER, "fw/vvx.ld": IMAGE, "site.cfg": b"<s/>"}
        transport = InMemoryTransport(files)
        outcome = boot(transport)
        assert asked(transport) == [
            ("GET", f"{MAC}.cfg"),
            ("GET", "000000000000.cfg"),
            ("GET", "fw/3111-44500-001.vvx.ld"),  # the part-number image first (§5.1)
            ("GET", "fw/vvx.ld"),
            ("PUT", f"logs/{MAC}-boot.log"),
            ("GET", "site.cfg"),
            ("GET", f"{MAC}-x.cfg"),
            ("GET", f"{MAC}-phone.cfg"),
            ("GET", f"{MAC}-web.cfg"),
            ("GET", "lic/000000000000-license.cfg"),
            ("GET", f"lic/{MAC}-license.cfg"),
            ("GET", f"{MAC}-directory.xml"),
            ("GET", "000000000000-directory.xml"),
            ("PUT", f"logs/{MAC}-app.log"),
        ]
        agents = [agent.split(" Type/")[-1] for _, _, agent, _ in transport.requests]
        assert agents[:5] == ["Updater Emulated/fleetkey"] * 5
        assert set(agents[5:]) == {"Application Emulated/fleetkey"}
        assert outcome.master == "000000000000.cfg"
        assert set(outcome.licenses) == {"lic/000000000000-license.cfg", f"lic/{MAC}-license.cfg"}

    def test_without_a_master_the_phone_asks_its_own_files_at_the_root(self) -> None:
        transport = InMemoryTransport()
        outcome = boot(transport)
        assert outcome.master is None
        names = [path for _, path in asked(transport)]
        assert names[:3] == [f"{MAC}.cfg", "000000000000.cfg", f"{MAC}-boot.log"]
        assert "000000000000-license.cfg" in names
        assert not [n for n in names if n.endswith(".ld")]  # no image without APP_FILE_PATH

    def test_a_missing_named_master_falls_back_to_the_usual_ones(self) -> None:
        transport = InMemoryTransport({"000000000000.cfg": MASTER})
        outcome = boot(transport, named="lab.cfg")
        assert asked(transport)[:3] == [
            ("GET", "lab.cfg"),
            ("GET", f"{MAC}.cfg"),
            ("GET", "000000000000.cfg"),
        ]
        assert outcome.master == "000000000000.cfg"

    def test_a_found_named_master_is_the_only_one_asked(self) -> None:
        transport = InMemoryTransport({"lab.cfg": MASTER, f"{MAC}.cfg": MASTER})
        assert boot(transport, named="lab.cfg").master == "lab.cfg"
        assert [p for _, p in asked(transport) if p.endswith(".cfg")][:2] == ["lab.cfg", "site.cfg"]

    def test_a_master_that_does_not_parse_is_said_and_booted_without(self) -> None:
        transport = InMemoryTransport({f"{MAC}.cfg": b"<APPLICATION"})
        outcome = boot(transport)
        assert outcome.master is None
        assert len(outcome.problems) == 1
        assert f"{MAC}.cfg" in outcome.problems[0]
        assert "000000000000.cfg" not in [p for _, p in asked(transport)]  # found: not next


class TestFirmware:
    def test_a_phone_running_the_served_image_reads_its_header_only(self) -> None:
        transport = InMemoryTransport({"000000000000.cfg": MASTER, "fw/vvx.ld": IMAGE})
        flash = Flash()
        assert boot(transport, flash).image_bytes == 0
        assert flash.image is not None  # adopted: the served image is the installed one
        reads = [r for r in transport.requests if r[1] == "fw/vvx.ld"]
        assert [first for *_, first in reads] == [512]
        assert boot(transport, flash).image_bytes == 0  # and at every boot after

    def test_a_new_image_is_downloaded_once_at_the_next_boot(self) -> None:
        transport = InMemoryTransport({"000000000000.cfg": MASTER, "fw/vvx.ld": IMAGE})
        flash = Flash()
        boot(transport, flash)
        transport.files["fw/vvx.ld"] = os.urandom(7000)
        assert boot(transport, flash).image_bytes == 7000
        assert boot(transport, flash).image_bytes == 0

    def test_a_phone_on_another_image_downloads_the_served_one_at_its_first_boot(self) -> None:
        transport = InMemoryTransport({"000000000000.cfg": MASTER, "fw/vvx.ld": IMAGE})
        flash = Flash(adopt=False)
        assert boot(transport, flash).image_bytes == len(IMAGE)
        assert boot(transport, flash).image_bytes == 0

    def test_an_image_that_cannot_be_read_is_not_downloaded_nor_adopted(self) -> None:
        script = {"fw/3111-44500-001.vvx.ld": [Reply(403)]}
        transport = InMemoryTransport({"000000000000.cfg": MASTER}, script=script)
        flash = Flash()
        assert boot(transport, flash).image_bytes == 0
        assert flash.image is None
        assert "fw/vvx.ld" not in [p for _, p in asked(transport)]  # refused: no next name


WALL = FixedClock(datetime(2027, 3, 1, 9, 30, tzinfo=UTC))  # the server's time, not the fleet's


def run_fleet(transport: InMemoryTransport) -> tuple[EmulatedPhone, float]:
    """One phone's first boot through a fleet (its retries), no socket, no SIP; the phone and
    the real seconds its boot took. Its virtual clock runs 1000 times faster than real time."""

    async def go() -> tuple[EmulatedPhone, float]:
        clock = VirtualClock(T0, speed=1000.0)
        fleet = Fleet([PhoneConfig(MAC)], TrustedKeys(), clock, host="127.0.0.1", port=1,
                      sip_port=None, connect=lambda _: transport, wall=WALL)  # fmt: skip
        await fleet.run(30, until_booted=True)
        assert fleet.all_booted_after_s is not None
        return fleet.phones[0], fleet.all_booted_after_s

    return asyncio.run(go())


class TestRetries:
    def test_a_503_is_retried_after_its_retry_after_even_as_an_http_date(self) -> None:
        """The date is read against the wall clock the fleet is given: 1 s after its now."""
        date = (WALL.now() + timedelta(seconds=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
        busy = [Reply(503, headers={"retry-after": date}), Reply(503, headers={"retry-after": "0"})]
        transport = InMemoryTransport({"000000000000.cfg": MASTER}, script={f"{MAC}.cfg": busy})
        phone, _ = run_fleet(transport)
        assert phone.busy_waits_s == [1.0, 0.0]
        assert phone.errors == []
        assert phone.boots_done == 1
        assert asked(transport)[:3] == [("GET", f"{MAC}.cfg")] * 3
        assert [f.status for f in phone.fetches[:2]] == [404, 200]  # 503s are not fetches

    def test_a_busy_servers_delay_is_waited_in_real_time_whatever_the_virtual_speed(
        self,
    ) -> None:
        """A server's back-pressure is its own time: at a virtual speed of 1000 a phone asked
        to wait 1 s came back after 1 ms, into the server that asked it to wait."""
        busy = [Reply(503, headers={"retry-after": "1"})]
        transport = InMemoryTransport({"000000000000.cfg": MASTER}, script={f"{MAC}.cfg": busy})
        phone, took_s = run_fleet(transport)
        assert phone.busy_waits_s == [1.0]
        assert took_s >= 1.0

    def test_a_server_busy_five_times_is_given_up_and_said(self) -> None:
        busy = [Reply(503, headers={"retry-after": "0"})] * 5
        transport = InMemoryTransport(script={f"{MAC}.cfg": busy})
        phone, _ = run_fleet(transport)
        assert phone.errors == [f"GET {MAC}.cfg: still 503 after 5 tries"]
        assert phone.boots_done == 1  # the boot goes on with the next name
        assert ("GET", "000000000000.cfg") in asked(transport)


class TestOneBootOrder:
    """The boot order is said once (``core.device.boot.boot_order``): the engine's ``Boot``
    and the emulator's boot were built apart (``DeviceEngine.boot_requests`` and
    ``run_boot``), and could drift."""

    def test_without_a_master_the_emulated_boot_asks_what_the_engine_says(self) -> None:
        from fleetkey.core.device.engine import DeviceEngine

        config = PhoneConfig(MAC)
        transport = InMemoryTransport({})
        boot(transport)
        engine = DeviceEngine(config, TrustedKeys(()))
        expected = [(r.method, r.name) for r in engine.power_on(T0)[0].requests]  # type: ignore[union-attr]
        assert asked(transport) == expected

    def test_with_a_master_the_emulated_boot_asks_boot_orders_requests_up_to_what_it_found(
        self,
    ) -> None:
        from fleetkey.core.device.boot import boot_order
        from fleetkey.core.masterconfig import parse_master_config

        files = {"000000000000.cfg": MASTER, "fw/vvx.ld": IMAGE}
        transport = InMemoryTransport(files)
        boot(transport, Flash(adopt=False))
        app = parse_master_config(MASTER, source="m").for_model("VVX_500")
        order = [(r.method, r.name) for r in boot_order(PhoneConfig(MAC), app, licenses=True)]
        # everything boot_order lists is asked, in its order, and nothing else; the image
        # found is asked again (its header, then the whole image: it differs from the flash)
        header, whole = ("GET", "fw/vvx.ld"), ("GET", "fw/vvx.ld")
        seen = asked(transport)
        assert seen.count(whole) == 2
        seen.remove(header)
        assert seen == order
