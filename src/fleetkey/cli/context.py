"""What every command gets: the data directory, the clock, the consoles, error reporting.

Loaded before any command (the root group is here), so it imports no framework at the top:
the store, the keyring and rich come in when a command first asks for them (docs/cli.md,
"Start-up").
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import update_wrapper
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, TypeVar

import click

from fleetkey.authority.datadir import DataDir
from fleetkey.cli.lazy import LazyGroup
from fleetkey.clock import Clock, SystemClock
from fleetkey.errors import FleetkeyError

if TYPE_CHECKING:
    from rich.console import Console

    from fleetkey.authority.keyring import Keyring
    from fleetkey.store.store import Store

P = ParamSpec("P")
R = TypeVar("R")
_RUNNING = "fleetkey.command"  # ctx.meta key (shared by nested contexts): the command that runs


@dataclass
class Env:
    data: DataDir
    clock: Clock = field(default_factory=SystemClock)
    debug: bool = False
    db_url: str | None = None
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))

    _store: Store | None = None

    def keyring(self) -> Keyring:
        from fleetkey.authority.keyring import Keyring  # start-up: see the module docstring

        self.data.require()
        return Keyring(self.data.keys)

    def store(self, *, current: bool = True) -> Store:
        """The store named by --db / FLEETKEY_DB, else SQLite in the data directory.

        ``current`` insists on the newest schema (everything but ``fleetkey db`` does).
        """
        if self._store is None:
            from fleetkey.store.database import DB_ENV, resolve_url
            from fleetkey.store.store import Store  # start-up: see the module docstring

            url = resolve_url(self.db_url, os.environ, self.data.root)
            if url.startswith("sqlite:") and self.db_url is None and DB_ENV not in os.environ:
                self.data.require()
            self._store = Store(url)
        if current:
            self._store.require_current()
        return self._store

    @property
    def actor(self) -> str:
        """Who the audit trail says did it: FLEETKEY_ACTOR, else the login name."""
        return os.environ.get("FLEETKEY_ACTOR") or f"{getpass.getuser()}@cli"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def print_json(self, document: Any) -> None:
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)


def pass_env(function: Callable[Concatenate[Env, P], R]) -> Callable[P, R]:
    """Decorator: hand the command the :class:`Env` of the run (and note which command runs,
    so an error about one input can be shown with that command's flag)."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        env = ctx.find_object(Env)
        if env is None:  # pragma: no cover  # the root group always creates one
            raise RuntimeError("fleetkey command run outside the fleetkey group")
        ctx.meta[_RUNNING] = ctx.command
        return function(env, *args, **kwargs)

    return update_wrapper(wrapper, function)


def _console(*, stderr: bool) -> Console:
    from rich.console import Console  # start-up: see the module docstring

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


# names an administrator tries for what is not a command of its own, and where it is
ELSEWHERE: Final = dict.fromkeys(
    ("ui", "dashboard", "web"),
    "the dashboard is /ui/ on the HTTP listener of `fleetkey serve` (docs/dashboard.md)",
)


class FleetkeyGroup(LazyGroup):
    """The root group: loads each command when it runs (:class:`LazyGroup`), and turns
    FleetkeyError and OSError into ``error: …`` + hint, exit 1."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click resolves it; a name that is not a command but names a part served
        elsewhere (``ui``) is a usage error that says where."""
        if args and args[0] in ELSEWHERE and self.get_command(ctx, args[0]) is None:
            raise click.UsageError(f"No such command {args[0]!r}.\nhint: {ELSEWHERE[args[0]]}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except FleetkeyError as exc:
            self._fail(ctx, with_flag(exc, ctx.meta.get(_RUNNING)), exc.hint)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            self._fail(ctx, f"{exc.strerror or exc}{where}", None)
        except Exception as exc:  # noqa: BLE001  # the CLI entry is an outer loop: report, exit 1
            self._fail(
                ctx,
                f"unexpected {type(exc).__name__}: {exc}",
                "this is a bug in fleetkey; rerun with --debug for the traceback",
            )
        return None  # pragma: no cover  # _fail always exits

    @staticmethod
    def _fail(ctx: click.Context, message: str, hint: str | None) -> None:
        env = ctx.find_object(Env)
        if env is not None and env.debug:
            traceback.print_exc(file=sys.stderr)
        click.echo(f"error: {message}", err=True)
        if hint:
            click.echo(f"hint: {hint}", err=True)
        ctx.exit(1)


def subject(positional: str | None, option: str | None, *, metavar: str, flag: str) -> str:
    """What a command acts on, given as its argument, the style of every command (``phones
    show MAC``, ``licenses post ID``), or by the option some took before (``--mac``): one of
    the two, not both, not neither (usage errors)."""
    if positional is not None and option is not None:
        raise click.UsageError(f"give {metavar} or {flag}, not both")
    if positional is None and option is None:
        raise click.UsageError(f"Missing argument '{metavar}'")
    return positional if positional is not None else str(option)


def with_flag(error: FleetkeyError, command: click.Command | None) -> str:
    """The error's message, naming the flag of ``command`` that its ``field`` is given by.

    Library errors name their subject as the library calls it (``expires``, ``capacity``); the
    CLI is where that input is a flag, so the flag is added here: ``… (--expires)``.
    """
    if error.field is None or command is None:
        return error.message
    for param in command.params:
        if param.name == error.field and isinstance(param, click.Option) and param.opts:
            return f"{error.message} ({param.opts[0]})"
    return error.message
