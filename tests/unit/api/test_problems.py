"""The admin API answers every error in one shape, with the status of the error's class."""

from __future__ import annotations

import pytest

from fleetkey.api.problems import STATUS, ref_of, status_of
from fleetkey.errors import (
    CommandFailedError,
    ConflictError,
    DatabaseError,
    FeatureCatalogError,
    FleetkeyError,
    InputError,
    KeyringError,
    LicenseValueError,
    NotFoundError,
    PassphraseError,
    QueueFullError,
    RowError,
    UnknownFeatureError,
)

from tests.helpers import Api


class TestStatusByClass:
    @pytest.mark.parametrize(
        ("error", "status", "ref"),
        [
            (NotFoundError("no rollout 7"), 404, "not-found"),
            (ConflictError("site 1 already exists"), 409, "conflict"),
            (KeyringError("no active signing key"), 409, "keyring"),
            (PassphraseError("FLEETKEY_KEY_PASSPHRASE is not set"), 500, "passphrase"),
            (InputError("MAC 'xyz' is not 12 hex digits"), 422, "input"),
            (RowError("p.csv", ["line 2: bad"], "nothing was done"), 422, "row"),
            (LicenseValueError("a license must grant at least one feature"), 422, "license-value"),
            (UnknownFeatureError("unknown feature 'fax'"), 422, "unknown-feature"),
            (FeatureCatalogError("features.toml: not valid TOML"), 500, "feature-catalog"),
            (DatabaseError("cannot open the database"), 500, "database"),
            (QueueFullError("fetch-record queue full"), 503, "queue-full"),
            (CommandFailedError("x does not verify"), 500, "command-failed"),
        ],
    )
    def test_the_nearest_class_decides(self, error: FleetkeyError, status: int, ref: str) -> None:
        assert (status_of(error), ref_of(error)) == (status, ref)

    def test_every_fleetkey_error_has_a_status(self) -> None:
        assert STATUS[FleetkeyError] == 500


class TestOneShape:
    def test_a_missing_phone_is_a_404_without_the_clis_hint(self, api: Api) -> None:
        reply = api.ask("GET", "/api/phones/0004f2000000")
        assert reply.status_code == 404
        assert reply.json() == {  # the CLI's hint names `fleetkey phones import CSV`
            "error": "not-found",
            "detail": "phone 0004f2000000 is not in the inventory",
        }

    def test_adding_a_site_that_exists_is_a_409(self, api: Api) -> None:
        site = {"serial": "100000000001", "name": "HQ", "timezone": "UTC", "window": "22:00-05:00"}
        assert api.ask("POST", "/api/sites", json=site).status_code == 201
        again = api.ask("POST", "/api/sites", json=site)
        assert again.status_code == 409
        assert again.json() == {"error": "conflict", "detail": "site 100000000001 already exists"}

    def test_an_unknown_feature_is_a_422_naming_it(self, api: Api) -> None:
        order = {"type": "phone", "serial": "0004f2000001", "features": ["fax"], "expires": "never"}
        reply = api.ask("POST", "/api/licenses", json=order)
        assert reply.status_code == 422
        assert reply.json()["error"] == "unknown-feature"
        assert reply.json()["detail"].startswith("unknown feature 'fax'")

    def test_fastapis_own_validation_errors_are_422_in_the_one_shape(self, api: Api) -> None:
        reply = api.ask("POST", "/api/licenses", json={"type": "phone"})
        assert reply.status_code == 422
        assert reply.json() == {"error": "invalid-request", "detail": "body.serial: Field required"}
        query = api.ask("GET", "/api/fetches?limit=0")
        assert query.status_code == 422
        assert query.json()["detail"].startswith("query.limit: ")

    def test_a_request_without_a_token_is_a_401_with_a_bearer_challenge(self, api: Api) -> None:
        reply = api.ask("GET", "/api/status", token=None)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == 'Bearer realm="fleetkey"'
        assert reply.json()["error"] == "unauthorized"
        assert "bearer token is required" in reply.json()["detail"]

    def test_no_such_route_or_method(self, api: Api) -> None:
        assert api.ask("GET", "/api/nothing").json() == {
            "error": "not-found",
            "detail": "Not Found",
        }
        reply = api.ask("DELETE", "/api/sites")
        assert reply.status_code == 405
        assert reply.json() == {"error": "method-not-allowed", "detail": "Method Not Allowed"}
