"""``fleetkey keys``: signing keys and trusted public keys."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
from rich.text import Text

from fleetkey.authority.keyring import KeyEntry, passphrase_from_env
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.setup import algorithm_option
from fleetkey.cli.tables import Cell, Column, Kind, Output, output, print_rows, table_options
from fleetkey.core.keyfile import CURRENT_PROTECTION, Kdf, KeyProtection
from fleetkey.core.signing import Algorithm
from fleetkey.store import audit


@click.group()
def keys() -> None:
    """Signing keys and trusted public keys (rotation: one active, all trusted)."""


@keys.command("create")
@algorithm_option("ed25519, or rsa2048 (PKCS#1 v1.5, SHA-256).")
@click.option("--name", help="Key name (default: <alg>-<fingerprint prefix>).")
@click.option("--activate", is_flag=True, help="Make it the active signing key.")
@click.option(
    "--unencrypted-key", is_flag=True, help="Store the private key unencrypted (still mode 0600)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the new key as JSON.")
@pass_env
def create(
    env: Env,
    algorithm: str,
    name: str | None,
    activate: bool,
    unencrypted_key: bool,
    as_json: bool,
) -> None:
    """Generate a signing key, encrypted with FLEETKEY_KEY_PASSPHRASE."""
    entry = env.keyring().create(
        env.clock,
        algorithm=Algorithm(algorithm),
        name=name,
        passphrase=passphrase_from_env(),
        unencrypted=unencrypted_key,
        activate=activate,
    )
    _audit(env, "key.create", entry)
    if as_json:
        env.print_json(entry.to_json())
        return
    env.out.print(
        f"created key {entry.name} ({entry.algorithm.value}, fingerprint "
        f"{entry.fingerprint[:16]}){' - active' if entry.active else ''}"
    )


KEY_COLUMNS: Final = (
    Column("name", Kind.ID),
    Column("algorithm", Kind.ID, drop=2),
    Column("fingerprint", Kind.ID, drop=1),
    Column("created (UTC)", Kind.ID, drop=3),
    Column("private", Kind.WORDS),
    Column("active", Kind.ID),
)


@keys.command("list")
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@pass_env
def list_keys(env: Env, wide: bool, as_csv: bool, as_json: bool) -> None:
    """List every key: algorithm, fingerprint, whether it signs, whether it is active."""
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    keyring = env.keyring()
    entries = [(entry, keyring.protection(entry.name)) for entry in keyring.entries()]
    if how is Output.JSON:
        env.print_json(
            [
                entry.to_json() | {"protection": None if kept is None else str(kept)}
                for entry, kept in entries
            ]
        )
        return
    rows: list[list[Cell]] = [
        [
            entry.name,
            entry.algorithm.value,
            entry.fingerprint[:16] if how is Output.TABLE else entry.fingerprint,
            entry.created_at.replace("T", " ")[:19],
            _private(kept),
            Text("active", style="green") if entry.active else "",
        ]
        for entry, kept in entries
    ]
    print_rows(env.out, KEY_COLUMNS, rows, how)


def _private(kept: KeyProtection | None) -> Cell:
    if kept is None:
        return "no (trusted public key)"
    if kept.kdf is Kdf.NONE:
        return Text("unencrypted", style="yellow")
    if kept.current:
        return "encrypted"
    return Text(f"encrypted, {kept}: run `fleetkey keys rewrap`", style="yellow")


@keys.command("rewrap")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print what was re-encrypted as JSON.")
@pass_env
def rewrap(env: Env, names: tuple[str, ...], as_json: bool) -> None:
    """Re-encrypt private keys with the current passphrase KDF (scrypt N=2^17, r=8, p=1).

    Keys written before it (PBKDF2, 2,048 iterations: cheap to guess) still open; this makes
    guessing their passphrase cost ~0.3 s a try. Without NAMES, every encrypted key that needs
    it. The passphrase stays FLEETKEY_KEY_PASSPHRASE; each file is replaced atomically.
    """
    keyring = env.keyring()
    chosen = list(names) or [name for name, _ in keyring.to_rewrap()]
    done = []
    for name in chosen:
        before, after = keyring.rewrap(name, passphrase_from_env())
        done.append({"name": name, "before": str(before), "after": str(after)})
        if before != after:
            _audit(env, "key.rewrap", keyring.entry(name), {"before": str(before)})
    if as_json:
        env.print_json(done)
        return
    if not done:
        env.out.print(f"every encrypted key is already protected with {CURRENT_PROTECTION}")
    for item in done:
        change = "kept" if item["before"] == item["after"] else f"was {item['before']}"
        env.out.print(f"{item['name']}: {item['after']} ({change})")


@keys.command("export-public")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its PEM as JSON.")
@pass_env
def export_public(env: Env, name: str | None, as_json: bool) -> None:
    """Print a public key as PEM (the active key by default)."""
    keyring = env.keyring()
    chosen = name or keyring.active.name
    pem = keyring.public_key(chosen).to_pem().decode("ascii")
    if as_json:
        env.print_json(keyring.entry(chosen).to_json() | {"pem": pem})
        return
    click.echo(pem, nl=False)


@keys.command("import-public")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Name to trust it under (default: <alg>-<fingerprint prefix>).")
@click.option("--json", "as_json", is_flag=True, help="Print the imported key as JSON.")
@pass_env
def import_public(env: Env, file: Path, name: str | None, as_json: bool) -> None:
    """Trust a public key (PEM) for verification."""
    entry = env.keyring().import_public(file.read_bytes(), env.clock, name=name, source=str(file))
    _audit(env, "key.import-public", entry)
    if as_json:
        env.print_json(entry.to_json())
        return
    env.out.print(f"trusting {entry.name} ({entry.algorithm.value}, {entry.fingerprint[:16]})")


@keys.command("activate")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@pass_env
def activate(env: Env, name: str, as_json: bool) -> None:
    """Make NAME the signing key; the previous one stays trusted."""
    entry = env.keyring().activate(name)
    _audit(env, "key.activate", entry)
    if as_json:
        env.print_json(entry.to_json())
        return
    env.out.print(f"{entry.name} is now the active signing key")


def _audit(env: Env, action: str, entry: KeyEntry, extra: dict[str, str] | None = None) -> None:
    with env.store().transaction() as session:
        audit.append(
            session,
            env.clock,
            actor=env.actor,
            action=action,
            subject=entry.name,
            details={
                "algorithm": entry.algorithm.value,
                "fingerprint": entry.fingerprint,
                "active": entry.active,
                **(extra or {}),
            },
        )
