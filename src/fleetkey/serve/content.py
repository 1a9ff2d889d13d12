"""What a phone is served: a file's bytes or its path, with what answers and records need.

Every protocol answers from a :class:`Content`: a posted license held in the in-memory view
(``serve.view``), a file of the provisioning tree or a file a phone uploaded earlier
(``serve.tree``). ``serve.fetching`` decides which one a request gets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class ContentKind(enum.StrEnum):
    PHONE_LICENSE = "phone-license"
    SITE_LICENSE = "site-license"
    FILE = "file"  # from the provisioning tree
    UPLOAD = "upload"  # a file a phone wrote (a log, its overrides), read back


@dataclass(frozen=True, slots=True)
class Content:
    """Something to serve: bytes in memory, or a file to stream."""

    kind: ContentKind
    name: str
    size: int
    etag: str
    modified: datetime
    digest: str | None  # SHA-256, for fetch records (files over 1 MiB have none)
    body: bytes | None = None
    path: Path | None = None
    license_id: int | None = None
