"""Phone User-Agents as real phones send them (domain.md §5.3), and what is not one."""

from __future__ import annotations

import pytest

from fleetkey.core.useragent import BootStage, PhoneAgent, format_user_agent, parse_user_agent

REAL = [
    (
        "FileTransport PolycomSoundPointIP-SPIP_550-UA/4.0.15.1047 (SN:0004a11a1a1a) "
        "Type/Application",
        PhoneAgent("SoundPointIP", "SPIP_550", "4.0.15.1047", "Application", "0004a11a1a1a"),
    ),
    (
        "FileTransport PolycomSoundPointIP-SPIP_335-UA/4.3.1.0440",
        PhoneAgent("SoundPointIP", "SPIP_335", "4.3.1.0440", None, None),
    ),
    (
        "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application",
        PhoneAgent("VVX", "VVX_500", "5.9.7.4477", "Application", None),
    ),
    (
        "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Updater",
        PhoneAgent("VVX", "VVX_500", "5.9.7.4477", "Updater", None),
    ),
    (
        "FileTransport PolycomVVX-VVX_410-UA/6.4.3.0013 (SN:0004F2ABCDEF) Type/Application",
        PhoneAgent("VVX", "VVX_410", "6.4.3.0013", "Application", "0004f2abcdef"),
    ),
]


@pytest.mark.parametrize(("text", "agent"), REAL, ids=[a.model + str(a.stage) for _, a in REAL])
def test_real_user_agents(text: str, agent: PhoneAgent) -> None:
    assert parse_user_agent(text) == agent


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "curl/8.0.1",
        "Mozilla/5.0 (X11; Linux x86_64)",
        "FileTransport PolycomVVX-VVX_500-UA/",
        "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2) Type/Application",
        "FileTransport PolycomVVX-VVX 500-UA/5.9.7.4477",
        "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application; extra",
        "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477" + " " * 600,
        "FileTransport Polycom" + "A" * 5000,
    ],
)
def test_anything_else_is_not_a_phone(text: str | None) -> None:
    assert parse_user_agent(text) is None


def test_all_zero_serial_names_no_phone() -> None:
    agent = parse_user_agent("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:000000000000)")
    assert agent is not None
    assert agent.mac is None


class TestFormat:
    @pytest.mark.parametrize(("text", "agent"), REAL, ids=[a.model + str(a.stage) for _, a in REAL])
    def test_what_phones_send_is_what_is_formatted(self, text: str, agent: PhoneAgent) -> None:
        stage = BootStage(agent.stage) if agent.stage else None
        mac = text.split("(SN:")[1][:12] if "(SN:" in text else None
        assert format_user_agent(
            agent.model, agent.firmware, stage, mac=mac, family=agent.family
        ) == (text)

    def test_an_untagged_phone_does_not_say_its_mac(self) -> None:
        agent = parse_user_agent(format_user_agent("VVX_500", "5.9.7.4477", BootStage.UPDATER))
        assert agent == PhoneAgent("VVX", "VVX_500", "5.9.7.4477", "Updater", None)


class TestEmulatedMark:
    def test_the_emulators_mark_is_parsed_and_real_agents_have_none(self) -> None:
        text = format_user_agent("VVX_500", "5.9.7.4477", BootStage.UPDATER, emulated=True)
        assert (
            text == "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Updater Emulated/fleetkey"
        )
        agent = parse_user_agent(text)
        assert agent == PhoneAgent("VVX", "VVX_500", "5.9.7.4477", "Updater", None, emulated=True)
        assert not any(a.emulated for _, a in REAL)

    def test_a_soundpoint_updater_without_type_carries_the_mark_too(self) -> None:
        text = format_user_agent("SPIP_670", "4.0.15.1047", None, family="SoundPointIP",
                                 emulated=True)  # fmt: skip
        agent = parse_user_agent(text)
        assert agent is not None
        assert (agent.stage, agent.emulated) == (None, True)

    @pytest.mark.parametrize(
        "text",
        [
            "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Updater Emulated/other",
            "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Emulated/fleetkey Type/Updater",
        ],
    )
    def test_another_mark_or_another_place_is_no_phone(self, text: str) -> None:
        assert parse_user_agent(text) is None
