"""Moved to ``fleetkey.serve.view``; ``Credential`` stays importable here until its last user
(``serve.http.auth``) imports it from there."""

from __future__ import annotations

from fleetkey.serve.view import Credential as Credential
