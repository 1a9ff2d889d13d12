"""An emulated phone whose FTP login is refused sends none of its session's requests, and the
emulator says so: its summary counts the refused logins as the server records them (one
``PASS`` 401 a session) and the requests not sent apart; the hint names the URL's login, the
one the server refused, never its password; against a real `fleetkey serve --ftp`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fleetkey.emulate.words import NOT_SENT, REFUSED_LOGIN

from tests.serving import (
    MAC,
    SHARED_LOGIN,
    SITE,
    fleet_env,
    fleetkey_command,
    make_fleet,
    start_ftp,
)


def test_a_refused_url_login_is_said_and_its_requests_counted_as_not_sent(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data, env = fleet_env(tmp_path_factory, "ftp-refused-login")
    make_fleet(data, env)
    server = start_ftp(data, env, "--ftp-shared-login", ":".join(SHARED_LOGIN))
    (tmp_path / "macs.txt").write_text(f"{MAC}\n")
    try:
        done = subprocess.run(
            [*fleetkey_command(), "emulate", "--server",
             f"ftp://{SHARED_LOGIN[0]}:s3cret-wrong@127.0.0.1:{server.port}/{SITE}",
             "--phones", "1", "--macs", str(tmp_path / "macs.txt"), "--sip-port", "0",
             "--duration", "3", "--json"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        stopped = server.running.stop()
    # read once the server has written every record: a refused login's record is written just
    # after its 530 is sent, not before it
    assert " 0 not recorded" in stopped
    refused = [
        r
        for r in json.loads(server.running.cli("fetches", "--json"))
        if (r["method"], r["status"]) == ("PASS", 401)
    ]
    assert done.returncode == 1, done.stderr
    assert (
        f"hint: the server refused the login in the URL ({SHARED_LOGIN[0]}): is it the one "
        "serve --ftp-shared-login names" in done.stderr
    )
    assert "s3cret-wrong" not in done.stderr + done.stdout
    answers = json.loads(done.stdout)["answers"]
    assert refused
    assert answers[REFUSED_LOGIN] == len(refused)  # as the server recorded them
    assert answers[f"RETR {NOT_SENT}"] >= 1
    assert not [a for a in answers if "530/550" in a]  # no file was refused: none was asked
