"""Phone models: what each is called on the wire, and mixes of them for an emulated fleet.

A model is written as phones write it in their User-Agent (``VVX_500``, ``SPIP_670``,
domain.md §5.3); ``model_key`` (``VVX500``) is how master configurations name it. Each has a
product family (the ``Polycom<family>-`` of the User-Agent), a part number (the prefix of its
part-number-specific firmware image, domain.md §5.1) and a firmware version a phone reports
when nothing else says which it runs (the versions of the real logs of domain.md §5.1, §5.3).

What a model may be called is one rule, ``check_model``: the inventory's import and a mix
(``--models VVX_500:60%,SPIP_670:40%``) both take any name of 1-64 printable ASCII characters
with a letter or digit in it (``VVX_410`` too: a model not in ``PART_NUMBERS`` has no part
number, so tries no part-number-specific image, and its family's firmware). ``wire_model``
writes it as phones do, the same for a mix and for the inventory's phones. A mix is parsed by
``parse_model_mix`` and dealt to phones by ``deal_models``: counts by the largest remainder,
interleaved, so any first N phones of a fleet carry the mix as closely as N allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from fleetkey.core.masterconfig import model_key
from fleetkey.errors import InputError

# model key → part number, from the vendor's image names (2345-12375-001 is the IP 335 of the
# HTTP log in domain.md §5.1, S14); a model not listed has none and tries no such image
PART_NUMBERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "SPIP335": "2345-12375-001",
        "SPIP450": "2345-12450-001",
        "SPIP550": "2345-12500-001",
        "SPIP560": "2345-12560-001",
        "SPIP650": "2345-12600-001",
        "SPIP670": "2345-12670-001",
        "SSIP7000": "3111-40000-001",
        "VVX300": "3111-46135-002",
        "VVX400": "3111-46157-002",
        "VVX500": "3111-44500-001",
        "VVX600": "3111-44600-001",
        "VVX1500": "2345-17960-001",
    }
)
# family → the firmware of the real User-Agents of domain.md §5.3 (S14, S16)
DEFAULT_FIRMWARE: Final[Mapping[str, str]] = MappingProxyType(
    {"VVX": "5.9.7.4477", "SoundPointIP": "4.0.15.1047", "SoundStationIP": "4.0.15.1047"}
)
# the models a mix may name, as User-Agents write them: VVX_500, SPIP_670, SSIP_7000 …
KNOWN_MODELS: Final = tuple(re.sub(r"^([A-Z]+)", r"\1_", key) for key in PART_NUMBERS)
_KNOWN: Final = {model_key(model): model for model in KNOWN_MODELS}
_MODEL: Final = re.compile(r"[\x20-\x7e]{1,64}")  # printable ASCII, as a phone's config holds
_WORD: Final = re.compile(r"[A-Za-z0-9]")
_NOT_WIRE: Final = re.compile(r"[^A-Za-z0-9_]+")
_SHARE: Final = re.compile(r"(\d{1,3}(?:\.\d+)?)%")


def check_model(text: str) -> str:
    """``text`` as a model name (stripped), or InputError: 1-64 printable ASCII characters
    with a letter or digit. The one rule for the inventory and for ``--models``."""
    model = text.strip()
    if not _MODEL.fullmatch(model) or not _WORD.search(model):
        raise InputError(
            f"model {text!r} is not a model name: 1-64 printable ASCII characters, with a "
            "letter or digit (e.g. VVX_500, SPIP_670, VVX_410)",
            field="model",
        )
    return model


def wire_model(model: str) -> str:
    """``model`` as phones write it in their User-Agent: a known one as ``KNOWN_MODELS`` spell
    it (``vvx500`` → ``VVX_500``), any other with each run of characters other than letters,
    digits and ``_`` made one ``_`` (``VVX 410`` → ``VVX_410``)."""
    wire = _NOT_WIRE.sub("_", check_model(model)).strip("_")
    return _KNOWN.get(model_key(wire), wire)


def family(model: str) -> str:
    """The product family a User-Agent names for ``model`` (``SPIP_670`` → ``SoundPointIP``)."""
    key = model_key(model)
    if key.startswith("SPIP"):
        return "SoundPointIP"
    if key.startswith("SSIP"):
        return "SoundStationIP"
    return "VVX"


def part_number(model: str) -> str:
    """The model's part number (``VVX_500`` → ``3111-44500-001``), or "" when unknown."""
    return PART_NUMBERS.get(model_key(model), "")


def default_firmware(model: str) -> str:
    return DEFAULT_FIRMWARE[family(model)]


def parse_model_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``VVX_500:60%,SPIP_670:40%`` → ((model, share), ...); the shares add up to 100 %."""
    mix: list[tuple[str, float]] = []
    for item in text.split(","):
        model, colon, share = item.strip().partition(":")
        try:
            model = wire_model(model)  # as User-Agents write it
        except InputError as exc:
            raise InputError(f"--models {text!r}: {exc.message}", field="models") from exc
        matched = _SHARE.fullmatch(share.strip()) if colon else None
        if matched is None:
            raise InputError(
                f"--models {text!r}: {item.strip()!r} is not MODEL:PERCENT% (e.g. VVX_500:60%)",
                field="models",
            )
        if any(model_key(model) == model_key(m) for m, _ in mix):
            raise InputError(f"--models {text!r}: {model} is named twice", field="models")
        value = float(matched.group(1))
        if value <= 0:
            raise InputError(f"--models {text!r}: {model} has a share of 0 %", field="models")
        mix.append((model, value))
    total = sum(value for _, value in mix)
    if abs(total - 100) > 1e-6:
        raise InputError(
            f"--models {text!r}: the shares add up to {total:g} %, expected 100 %",
            field="models",
        )
    return tuple(mix)


def deal_models(mix: Sequence[tuple[str, float]], phones: int) -> list[str]:
    """Each of ``phones`` phones' model: counts by the largest remainder, interleaved."""
    exact = [share / 100 * phones for _, share in mix]
    counts = [int(value) for value in exact]
    by_remainder = sorted(range(len(mix)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: phones - sum(counts)]:
        counts[i] += 1
    slots = sorted(((k + 0.5) / count, i) for i, count in enumerate(counts) for k in range(count))
    return [mix[i][0] for _, i in slots]
