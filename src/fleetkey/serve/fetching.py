"""The fetch pipeline: who is asking, may they, and what they get, whatever the protocol.

HTTP, TFTP and FTP are framing adapters around :meth:`Pipeline.decide`: they hand over a
request's identity facts (protocol, path segments, address, parsed User-Agent, login) and get a
:class:`Ruling` — serve this content, accept this upload, refuse (with the status and
reason), not found, or busy — then frame it and hand the outcome to ``serve.recorder``.

Who is asking (spec §6), in order: the User-Agent's ``(SN:<mac>)``, the MAC in the file name,
the per-device login, and otherwise the address: the MAC that address named within the current
boot (``serve.addresses``). An address several phones use at once is ambiguous and names nobody.
With logins required (per-device authentication on), the login decides and a phone gets only
its own files and its own site's license, whatever the name or prefix; a protocol that cannot
log in (TFTP) is refused every per-device file then.

The phone's site, for the site license: its inventory site; else a ``/<site-serial>/`` path
prefix; else, behind an ambiguous address, the site all the phones sharing it belong to. A MAC
the inventory does not know is served, refused or registered (``UnknownPolicy``).

What it gets: license names (``000000000000-license.cfg``, ``<mac>-license.cfg``) at the root,
under a site prefix or in a directory a master configuration names as ``LICENSE_DIRECTORY``
(``serve.layout``) are the store's posted keys; else, for the site license, the file in the
site's own place (``<site>/000000000000-license.cfg``, where fleetkey writes it, see
``ops/placement.py``); else the tree's file of that name (at the root: the tree's default;
in a ``LICENSE_DIRECTORY``, the file there, else the root's of that name);
names phones write (``<mac>-app.log``, ``<mac>-phone.cfg``…, ``serve.uploads``) are the tree's
file, else what the phone uploaded; anything else is the tree's file, the site subtree first.

Nothing here waits or writes: everything comes from the in-memory view, the tree index and the
address table, and the caller passes the time, so every branch is testable with a fixed clock.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal, NamedTuple, Protocol

from fleetkey.core.license import LicenseType
from fleetkey.core.naming import license_file_type, license_place
from fleetkey.core.useragent import PhoneAgent
from fleetkey.serve.addresses import Addresses, Sharing
from fleetkey.serve.content import Content
from fleetkey.serve.layout import Layout
from fleetkey.serve.tree import FileTree
from fleetkey.serve.uploads import Upload, upload_rule
from fleetkey.serve.view import View, ViewSource
from fleetkey.store.sightings import NewPhone

_MAC_NAME: Final = re.compile(r"([0-9A-Fa-f]{12})[-.]")
_HEX12: Final = re.compile(r"[0-9A-Fa-f]{12}")
_HEX_RUN: Final = re.compile(r"[0-9A-Fa-f]{12,}")
_SHARED: Final = "000000000000"
_SITE: Final = "Site"
_SHARED_REASON: Final = "phones of several sites share this address: whose site license is unknown"


# How the asking phone was known; plain strings (counted and recorded per request, and an enum
# member hashes through a Python-level __hash__)
Via = Literal["agent", "name", "login", "address", "ambiguous"]
AGENT: Final = "agent"  # the User-Agent's (SN:<mac>)
NAME: Final = "name"  # the MAC in the file name
LOGIN: Final = "login"  # its per-device login
ADDRESS: Final = "address"  # the MAC its address named within this boot
AMBIGUOUS: Final = "ambiguous"  # its address is shared by several phones right now
_SELF_NAMING: Final = frozenset({AGENT, NAME, LOGIN})


class UnknownPolicy(enum.StrEnum):
    """What happens to a MAC the inventory does not know."""

    SERVE = "serve"
    REFUSE = "refuse"  # 403 (TFTP: access violation) to every request from it
    REGISTER = "register"  # added at the prefix's site or the registration site, and served


class Ruling(NamedTuple):
    """What to answer: ``status`` 200 with ``content`` (or an accepted ``upload``), else why not.

    ``mac`` and ``via`` say who asked (both None when nothing did), ``site`` the site whose
    license applies, ``register`` a phone to add to the inventory when this is recorded.
    Never changed once made: HTTP remembers rulings and answers repeats with them. A named
    tuple, not a frozen dataclass: one is made per request, and a frozen dataclass sets each
    of its eight fields through ``object.__setattr__`` (``decide`` measured 0.6-1.1 us slower).
    """

    status: int
    content: Content | None = None
    mac: str | None = None
    via: Via | None = None
    reason: str = ""
    site: str | None = None
    upload: Upload | None = None
    register: NewPhone | None = None


class Decider(Protocol):
    """What a framing adapter asks for a ruling (a port: the server's is :class:`Pipeline`)."""

    def decide(
        self,
        segments: tuple[str, ...],
        address: str | None,
        agent: PhoneAgent | None,
        now: float,
        *,
        login: str | None = None,
        write: bool = False,
    ) -> Ruling: ...


@dataclass(slots=True)
class Shape:
    """What a path says by itself (no view, no tree). Never changed once made."""

    segments: tuple[str, ...]
    directory: tuple[str, ...]  # the segments before the name
    name: str
    license: tuple[str, str | None] | None  # (LicenseType value, MAC of a phone license)
    named_mac: str | None  # the MAC a per-phone file name starts with
    upload: Upload | None  # a name phones write
    hex_runs: tuple[str, ...]  # runs of 12 or more hex digits (lowercase) but 000000000000
    prefix: str | None  # a leading 12-hex-digit segment: a site, if the view knows it
    inner: Shape | None  # the shape of the rest, should the prefix be a site


def shape_of(segments: tuple[str, ...]) -> Shape:
    """The shape of checked path segments (``core.requestpath``).

    Phones repeat their paths, but a fleet's per-phone names (``<mac>.cfg``,
    ``<mac>-license.cfg``…) are too many for a cache of paths: a per-phone name at the root is
    made from its shared part (``-license.cfg``), worked out once, and its MAC.
    """
    if len(segments) == 1:
        name = segments[0]
        if len(name) > 13 and name[12] in "-." and _HEX12.fullmatch(name, 0, 12):
            mac = name[:12].lower()
            if mac != _SHARED:
                license_, upload, runs = _per_phone(name[12:])
                return Shape(
                    segments,
                    (),
                    name,
                    (license_, mac) if license_ is not None else None,
                    mac,
                    Upload(mac, upload, name) if upload is not None else None,
                    (mac, *runs),
                    None,
                    None,
                )
    return _shape(segments)


@lru_cache(maxsize=4096)
def _per_phone(rest: str) -> tuple[str | None, int | None, tuple[str, ...]]:
    """What the shared part of a per-phone name says: a phone license (its type), an upload
    (its cap), and its own hex runs."""
    probe = "0004f2000001" + rest  # any MAC: the shared part decides
    kind = license_file_type(probe)
    rule = upload_rule(probe)
    runs = tuple(run.lower() for run in _HEX_RUN.findall(rest) if run != _SHARED)
    return (
        kind[0].value if kind is not None else None,
        rule.cap_bytes if rule is not None else None,
        runs,
    )


@lru_cache(maxsize=65536)
def _shape(segments: tuple[str, ...]) -> Shape:
    name = segments[-1]
    kind = license_file_type(name)
    named = _MAC_NAME.match(name)
    named_mac = named.group(1).lower() if named and named.group(1) != _SHARED else None
    runs = tuple(run.lower() for run in _HEX_RUN.findall("/".join(segments)) if run != _SHARED)
    prefix = inner = None
    if len(segments) > 1 and len(segments[0]) == 12 and _HEX12.fullmatch(segments[0]):
        prefix, inner = segments[0].lower(), shape_of(segments[1:])
    return Shape(
        segments,
        segments[:-1],
        name,
        None if kind is None else (kind[0].value, kind[1]),
        named_mac,
        upload_rule(name),
        runs,
        prefix,
        inner,
    )


class Pipeline:
    """One ruling for every protocol; see the module's docstring."""

    def __init__(
        self,
        view: ViewSource,
        tree: FileTree,
        uploads: FileTree,
        *,
        addresses: Addresses | None = None,
        policy: UnknownPolicy = UnknownPolicy.SERVE,
        register_site: str | None = None,
        logins_required: bool = False,
    ) -> None:
        self._live = view
        self.tree = tree
        self.uploads = uploads
        self.addresses = addresses or Addresses()
        self.policy = policy
        self.register_site = register_site
        self.logins_required = logins_required
        self.layout = Layout()

    @property
    def view(self) -> View:
        """The in-memory view rulings are made from now (replaced whole on every change)."""
        return self._live.view

    def decide(
        self,
        segments: tuple[str, ...],
        address: str | None,
        agent: PhoneAgent | None,
        now: float,
        *,
        login: str | None = None,
        write: bool = False,
    ) -> Ruling:
        """The answer to a read (or, with ``write``, an upload) of ``segments``.

        ``login``: the MAC a per-device login proved (None: no login on this request);
        ``now``: monotonic seconds, for the address table.
        """
        view = self._live.view
        shape = whole = shape_of(segments)
        prefix_site = None
        if shape.inner is not None and shape.prefix in view.sites:
            prefix_site, shape = shape.prefix, shape.inner
        sharing: Sharing | None = None
        if login is not None:
            mac: str | None = login
            via: Via | None = LOGIN
        elif agent is not None and agent.mac is not None:
            mac, via = agent.mac, AGENT
        elif shape.named_mac is not None:
            mac, via = shape.named_mac, NAME
        else:
            mac = via = None
            if address is not None:
                found = self.addresses.who(address, now)
                if isinstance(found, str):
                    mac, via = found, ADDRESS
                elif found is not None:
                    sharing, via = found, AMBIGUOUS
        if via in _SELF_NAMING and address is not None and mac is not None:
            self.addresses.named(address, mac, now, view.phone_sites.get(mac))
        if self.logins_required:
            refused = self._guard(whole, shape, login, view, mac, via)
            if refused is not None:
                return refused
        site = view.phone_sites.get(mac) if mac is not None else None
        register = None
        if mac is not None and site is None:  # not in the inventory
            if self.policy is UnknownPolicy.REFUSE:
                return Ruling(403, None, mac, via, f"phone {mac} is not in the inventory")
            if self.policy is UnknownPolicy.REGISTER:
                target = prefix_site or self.register_site
                if target is not None:
                    model = agent.model if agent is not None else None
                    firmware = agent.firmware if agent is not None else None
                    register = NewPhone(mac, target, model, firmware)
        if site is None:
            if prefix_site is not None:
                site = prefix_site
            elif sharing is not None:  # phones of one site behind one address: that site
                site = sharing.site
                if site is None and shape.license is not None and shape.license[0] == _SITE:
                    # phones of several sites share the address: the tree's default file
                    # would be some other site's key for some of them. The phone keeps what
                    # it has (a 404), and the record says the address was shared
                    return Ruling(404, None, None, via, _SHARED_REASON)
        if write:
            return self._upload(shape, mac, via, site, register)
        content = self._resolve(shape, prefix_site, site, view)
        if content is None:
            return Ruling(404, None, mac, via, "no such file", site, None, register)
        return Ruling(200, content, mac, via, "", site, None, register)

    def _resolve(
        self, shape: Shape, prefix_site: str | None, site: str | None, view: View
    ) -> Content | None:
        license_ = shape.license
        in_place = license_ is not None and (
            not shape.directory or shape.directory in self.layout.license_dirs
        )
        if license_ is not None and in_place:
            if license_[0] == _SITE:
                posted = view.site_license(site) if site is not None else None
                if posted is None and site is not None:  # the file in the site's place
                    posted = self.tree.find(license_place(LicenseType.SITE, site))
            else:
                posted = view.phone_license(license_[1] or "")
            if posted is not None:
                return posted
        content = self._file(shape.segments, prefix_site)
        if content is None and in_place and shape.directory:
            # a LICENSE_DIRECTORY moves the names phones ask for, not the tree's files: the
            # default (and a phone's file) is found there as at the root
            content = self._file((shape.name,), prefix_site)
        if content is None and shape.upload is not None:
            content = self.uploads.find((shape.upload.mac, shape.upload.stored))
        return content

    def _file(self, segments: tuple[str, ...], prefix_site: str | None) -> Content | None:
        if prefix_site is not None:
            found = self.tree.find((prefix_site, *segments))
            if found is not None:
                return found
        return self.tree.find(segments)

    def _upload(
        self,
        shape: Shape,
        mac: str | None,
        via: Via | None,
        site: str | None,
        register: NewPhone | None,
    ) -> Ruling:
        if shape.upload is None:
            return Ruling(403, None, mac, via, f"{shape.name!r} is not a file phones upload")
        return Ruling(200, None, mac, via, "", site, shape.upload, register)

    def _guard(
        self,
        whole: Shape,
        shape: Shape,
        login: str | None,
        view: View,
        mac: str | None,
        via: Via | None,
    ) -> Ruling | None:
        """With logins required: a phone's own files and its own site's, or a refusal (of
        ``mac``, known ``via``)."""
        if login is None:
            if shape.license is not None or shape.upload is not None or whole.hex_runs:
                return Ruling(403, None, mac, via, "per-device files need a login here")
            return None
        site = view.phone_sites.get(login)
        if site is None and whole.inner is not None and whole.prefix in view.sites:
            site = whole.prefix  # a phone the inventory does not place (a shared login's MAC):
            # the path's site places it, as it does without logins; the unknown policy rules next
        own = {login, site}
        for other in _named_in(whole.hex_runs, view):
            if other not in own:
                what = "site" if other in view.sites else "phone"
                return Ruling(403, None, mac, via, f"that file belongs to another {what} ({other})")
        return None


def _named_in(runs: tuple[str, ...], view: View) -> list[str]:
    """The MACs and site serials a path's hex runs name: a run of exactly 12 digits, and in
    longer runs (``phone0004f2a1b2c3.cfg``: the ``e`` is a hex digit) every 12-digit stretch
    that is a phone or a site the view knows."""
    named = []
    for run in runs:
        if len(run) == 12:
            named.append(run)
            continue
        for start in range(len(run) - 11):
            part = run[start : start + 12]
            if part in view.phone_sites or part in view.sites:
                named.append(part)
    return named
