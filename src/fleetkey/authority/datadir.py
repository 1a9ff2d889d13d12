"""The data directory: where keys, the feature catalog extension and the provisioning tree live.

::

    <data>/                 FLEETKEY_DATA, default ./fleetkey-data
      keys/                 the keyring (mode 0700): keyring.json, <name>.key.pem, <name>.pub.pem,
                            api-token.sha256 (the admin API token, hashed)
      features.toml         the operator's additions to the feature catalog
      provisioning/         the tree phones fetch from; issued license files land here
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetkey.core.features import FeatureCatalog, default_catalog, parse_catalog
from fleetkey.errors import NotInitializedError

DATA_ENV: Final = "FLEETKEY_DATA"
DEFAULT_DATA: Final = "fleetkey-data"
FEATURES_TEMPLATE: Final = """\
# Operator additions to the fleetkey feature catalog (slots 0-27).
# Slots 0-6 ship with fleetkey; `fleetkey features` lists the whole catalog.
#
# [[feature]]
# slot = 7
# name = "h323"
# description = "H.323 video calling on VVX 1500"
"""


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DataDir:
        return cls(Path(env.get(DATA_ENV) or DEFAULT_DATA))

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def provisioning(self) -> Path:
        return self.root / "provisioning"

    @property
    def api_token(self) -> Path:
        """The SHA-256 of the admin API's bearer token (in the keys directory, mode 0700)."""
        return self.keys / "api-token.sha256"

    @property
    def features_file(self) -> Path:
        return self.root / "features.toml"

    def exists(self) -> bool:
        return self.keys.is_dir()

    def require(self) -> None:
        """Raise NotInitializedError unless ``fleetkey init`` has run here."""
        if not self.exists():
            raise NotInitializedError(f"{self.root} is not a fleetkey data directory")

    def create(self) -> bool:
        """Create the directories and the catalog template; False if they already existed."""
        fresh = not self.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(mode=0o700, exist_ok=True)
        self.keys.chmod(0o700)
        self.provisioning.mkdir(exist_ok=True)
        if not self.features_file.exists():
            self.features_file.write_text(FEATURES_TEMPLATE, encoding="utf-8")
        return fresh

    def catalog(self) -> FeatureCatalog:
        """The shipped catalog extended by ``features.toml`` when it exists."""
        catalog = default_catalog()
        if self.features_file.is_file():
            text = self.features_file.read_text(encoding="utf-8")
            features = parse_catalog(text, str(self.features_file))
            catalog = catalog.extended(features, str(self.features_file))
        return catalog
