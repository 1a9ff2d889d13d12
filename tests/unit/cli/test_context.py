"""The CLI edge names the flag a library error's ``field`` is given by, and nothing else."""

from __future__ import annotations

import click

from fleetkey.cli.context import with_flag
from fleetkey.errors import InputError


@click.command()
@click.option("--feature", "per_feature", multiple=True)
@click.option("--expires")
@click.argument("serial")
def issue(per_feature: tuple[str, ...], expires: str | None, serial: str) -> None:
    """A command shaped like ``fleetkey issue phone``."""


class TestWithFlag:
    def test_a_field_given_by_an_option_is_shown_as_that_option(self) -> None:
        error = InputError("per-feature expiry 'x' is not NAME=DATE", field="per_feature")
        assert with_flag(error, issue) == "per-feature expiry 'x' is not NAME=DATE (--feature)"

    def test_an_error_without_a_field_keeps_its_message(self) -> None:
        assert with_flag(InputError("bad"), issue) == "bad"

    def test_a_field_the_command_has_no_option_for_keeps_its_message(self) -> None:
        assert with_flag(InputError("bad", field="capacity"), issue) == "bad"
        assert with_flag(InputError("bad", field="serial"), issue) == "bad"  # an argument

    def test_without_a_command_the_message_is_kept(self) -> None:
        assert with_flag(InputError("bad", field="expires"), None) == "bad"
