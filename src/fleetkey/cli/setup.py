"""``fleetkey init`` and ``fleetkey features``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import click

from fleetkey.authority.keyring import PASSPHRASE_ENV, KeyEntry, Keyring, passphrase_from_env
from fleetkey.authority.tokens import create_token, has_token
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.tables import Column, F, Kind, Output, output, print_rows, table_options
from fleetkey.core.signing import Algorithm
from fleetkey.errors import DatabaseError, PassphraseError
from fleetkey.store import audit
from fleetkey.store.store import Store

ALGORITHMS = click.Choice([a.value for a in Algorithm])


def algorithm_option(help_text: str) -> Callable[[F], F]:
    """``--alg``: a new signing key's algorithm, the same choice and default for ``init``'s
    first key and ``keys create``."""
    return click.option(
        "--alg", "algorithm", type=ALGORITHMS, default="ed25519", show_default=True, help=help_text
    )


@click.command()
@algorithm_option("Algorithm of the first signing key.")
@click.option(
    "--unencrypted-key",
    is_flag=True,
    help="Store the first private key unencrypted (still mode 0600).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_env
def init(env: Env, algorithm: str, unencrypted_key: bool, as_json: bool) -> None:
    """Create the data directory and a first signing key.

    When it fails (no passphrase, a database it cannot reach), it leaves nothing behind.
    Safe to run again: an existing data directory and keyring are kept as they are, except that
    group and other permissions are taken off everything fleetkey keeps there (each change is
    listed) and keys encrypted the old, cheap way are named for `fleetkey keys rewrap`. The
    private key is encrypted with FLEETKEY_KEY_PASSPHRASE unless --unencrypted-key is given.
    """
    passphrase = passphrase_from_env()
    if env.data.keys.is_dir() and Keyring(env.data.keys).entries():
        new_key_needed = False
    else:  # checked before anything is made: a failed init leaves nothing behind
        new_key_needed = True
        if passphrase is None and not unencrypted_key:
            raise PassphraseError(
                f"{PASSPHRASE_ENV} is not set: the first signing key is encrypted at rest; "
                "nothing was created",
                hint=f"export {PASSPHRASE_ENV}=..., or pass --unencrypted-key to store the key "
                "in clear (file mode 0600)",
            )
    with env.data.undone_on_failure():
        created = env.data.create()
        store = env.store(current=False)
        before, revision = store.upgrade()
        try:
            tightened = env.data.tighten()  # after the store: fleetkey.db, -wal and -shm exist
            new_key, token = _first_key_and_token(
                env, Algorithm(algorithm), passphrase, unencrypted_key, new_key_needed
            )
            with store.transaction() as session:
                if created or before is None:
                    audit.append(
                        session,
                        env.clock,
                        actor=env.actor,
                        action="init",
                        subject=str(env.data.root),
                        details={"schema": revision},
                    )
                if new_key is not None:
                    audit.append(
                        session,
                        env.clock,
                        actor=env.actor,
                        action="key.create",
                        subject=new_key.name,
                        details=_key_details(new_key),
                    )
        except BaseException:
            if before is None:  # the database was empty: leave it so (another database too)
                _undo_schema(env, store)
            raise
    keyring = Keyring(env.data.keys)
    active = keyring.active
    to_rewrap = keyring.to_rewrap()
    if as_json:
        env.print_json(
            {
                "data": str(env.data.root),
                "created": created,
                "provisioning": str(env.data.provisioning),
                "key_created": new_key is not None,
                "active_key": active.to_json(),
                "database": store.safe_url,
                "schema": revision,
                "api_token": token,
                "tightened": [str(change) for change in tightened],
                "to_rewrap": [name for name, _ in to_rewrap],
            }
        )
        return
    for change in tightened:
        env.warn(f"made private (was readable by others): {change}")
    for name, kept in to_rewrap:
        env.warn(f"key {name} is encrypted with {kept}, cheap to guess: run `fleetkey keys rewrap`")
    verb = "created" if created else "already set up:"
    env.out.print(f"{verb} {env.data.root}")
    if new_key is not None:
        state = "encrypted" if new_key.encrypted else "UNENCRYPTED"
        env.out.print(
            f"signing key {new_key.name} ({new_key.algorithm.value}, {state}, "
            f"fingerprint {new_key.fingerprint[:16]})"
        )
    else:
        env.out.print(f"active signing key {active.name} (kept)")
    env.out.print(f"database {store.safe_url} at schema {revision}")
    env.out.print(f"issued licenses go to {env.data.provisioning}")
    if token is not None:
        env.out.print(f"admin API token (shown once, kept hashed): {token}")


def _first_key_and_token(
    env: Env, algorithm: Algorithm, passphrase: bytes | None, unencrypted: bool, needed: bool
) -> tuple[KeyEntry | None, str | None]:
    """The first signing key when the keyring has none, and the first API token."""
    new_key = None
    if needed:
        new_key = Keyring(env.data.keys).create(
            env.clock, algorithm=algorithm, passphrase=passphrase, unencrypted=unencrypted
        )
    token = None if has_token(env.data.api_token) else create_token(env.data.api_token)
    return new_key, token


def _undo_schema(env: Env, store: Store) -> None:
    try:
        store.downgrade_to_empty()
    except DatabaseError as exc:  # the error that made init fail is the one to report
        env.warn(f"{exc.message}: the database keeps fleetkey's empty tables")


def _key_details(entry: KeyEntry) -> dict[str, object]:
    return {
        "algorithm": entry.algorithm.value,
        "fingerprint": entry.fingerprint,
        "private": entry.private,
        "encrypted": entry.encrypted,
        "active": entry.active,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the new token as JSON.")
@pass_env
def token(env: Env, as_json: bool) -> None:
    """Make a new admin API bearer token; the previous one stops working.

    The token is printed once; the data directory keeps only its SHA-256.
    """
    env.data.require()
    made = create_token(env.data.api_token)
    with env.store().transaction() as session:
        audit.append(
            session, env.clock, actor=env.actor, action="api-token.create", subject="admin API"
        )
    if as_json:
        env.print_json({"api_token": made})
        return
    env.out.print(made, soft_wrap=True)


@click.command()
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@pass_env
def features(env: Env, wide: bool, as_csv: bool, as_json: bool) -> None:
    """List the feature catalog: slot, name, description."""
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    catalog = env.data.catalog()
    if how is Output.JSON:
        env.print_json(
            [{"slot": f.slot, "name": f.name, "description": f.description} for f in catalog]
        )
        return
    rows = [[str(f.slot), f.name, f.description] for f in catalog]
    print_rows(env.out, FEATURE_COLUMNS, rows, how)


FEATURE_COLUMNS: Final = (
    Column("slot", Kind.NUMBER),
    Column("name", Kind.WORDS),
    Column("description"),
)
