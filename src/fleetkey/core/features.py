"""The feature catalog: license slot ↔ feature name, as data (spec §2).

The package ships ``fleetkey/data/features.toml``; an operator extends it with a file of the same
form in the data directory. Parsing is pure; reading the files is the caller's business.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources

from fleetkey.core.license import SLOT_COUNT
from fleetkey.errors import FeatureCatalogError, UnknownFeatureError

_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_MAX_NAME = 40


@dataclass(frozen=True, slots=True)
class Feature:
    slot: int
    name: str
    description: str = ""


class FeatureCatalog:
    """An immutable slot ↔ name mapping."""

    def __init__(self, features: Iterable[Feature] = ()) -> None:
        self._by_slot: dict[int, Feature] = {}
        self._by_name: dict[str, Feature] = {}
        for feature in features:
            self._add(feature, "catalog")

    def _add(self, feature: Feature, source: str) -> None:
        same_slot = self._by_slot.get(feature.slot)
        same_name = self._by_name.get(feature.name)
        if same_slot is not None and same_slot.name != feature.name:
            raise FeatureCatalogError(
                f"{source}: slot {feature.slot} is already {same_slot.name!r}, "
                f"cannot also be {feature.name!r}"
            )
        if same_name is not None and same_name.slot != feature.slot:
            raise FeatureCatalogError(
                f"{source}: feature {feature.name!r} is already slot {same_name.slot}, "
                f"cannot also be slot {feature.slot}"
            )
        self._by_slot[feature.slot] = feature
        self._by_name[feature.name] = feature

    def extended(self, features: Iterable[Feature], source: str) -> FeatureCatalog:
        """A new catalog with ``features`` added; a known (slot, name) pair may update its text."""
        catalog = FeatureCatalog(self)
        for feature in features:
            catalog._add(feature, source)
        return catalog

    def __iter__(self) -> Iterator[Feature]:
        return iter(sorted(self._by_slot.values(), key=lambda f: f.slot))

    def __len__(self) -> int:
        return len(self._by_slot)

    def name_of(self, slot: int) -> str | None:
        feature = self._by_slot.get(slot)
        return feature.name if feature else None

    def label(self, slot: int) -> str:
        """The feature's name, or ``slot-N`` for a slot the catalog does not name."""
        return self.name_of(slot) or f"slot-{slot}"

    def slot_of(self, name: str) -> int:
        """The slot of feature ``name``; ``slot-N`` addresses any slot directly."""
        feature = self._by_name.get(name.strip())
        if feature is not None:
            return feature.slot
        match = re.fullmatch(r"slot-(\d+)", name.strip())
        if match and int(match.group(1)) < SLOT_COUNT:
            return int(match.group(1))
        raise UnknownFeatureError(
            f"unknown feature {name!r}: expected one of {', '.join(self._by_name)}",
            hint="`fleetkey features` lists the catalog; extend it in <data>/features.toml",
        )


def parse_catalog(text: str, source: str) -> list[Feature]:
    """The ``[[feature]]`` tables of a catalog TOML document."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FeatureCatalogError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(document) - {"feature"}
    if unknown:
        raise FeatureCatalogError(
            f"{source}: unexpected keys {sorted(unknown)}, expected [[feature]]"
        )
    entries = document.get("feature", [])
    if not isinstance(entries, list):
        raise FeatureCatalogError(f"{source}: 'feature' must be an array of tables ([[feature]])")
    return [_feature(entry, source, number) for number, entry in enumerate(entries, start=1)]


def _feature(entry: object, source: str, number: int) -> Feature:
    where = f"{source} feature {number}"
    if not isinstance(entry, Mapping):
        raise FeatureCatalogError(f"{where}: expected a table with slot, name, description")
    extra = set(entry) - {"slot", "name", "description"}
    if extra:
        raise FeatureCatalogError(f"{where}: unexpected keys {sorted(extra)}")
    slot, name, description = entry.get("slot"), entry.get("name"), entry.get("description", "")
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < SLOT_COUNT:
        raise FeatureCatalogError(f"{where}: slot is {slot!r}, expected an integer 0-27")
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise FeatureCatalogError(
            f"{where}: name is {name!r}, expected lowercase words joined by '-' "
            f"(at most {_MAX_NAME} characters)"
        )
    if name.startswith("slot-"):
        raise FeatureCatalogError(f"{where}: name {name!r} is reserved for unnamed slots")
    if not isinstance(description, str):
        raise FeatureCatalogError(f"{where}: description must be a string")
    return Feature(slot, name, description)


def default_catalog() -> FeatureCatalog:
    """The catalog shipped in the package (``fleetkey/data/features.toml``)."""
    text = resources.files("fleetkey").joinpath("data/features.toml").read_text("utf-8")
    return FeatureCatalog(parse_catalog(text, "fleetkey/data/features.toml"))
