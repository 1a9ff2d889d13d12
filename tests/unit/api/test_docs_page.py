"""/api/docs loads Swagger UI from fleetkey itself, never from a CDN."""

from __future__ import annotations

import re

import pytest

from tests.helpers import Api


def test_the_docs_page_names_only_assets_fleetkey_serves(api: Api) -> None:
    page = api.ask("GET", "/api/docs", token=None)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(sources) == [
        "/api/docs/favicon.png",
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/swagger-ui.css",
    ]
    assert "'/api/openapi.json'" in page.text


@pytest.mark.parametrize(
    ("name", "media_type", "starts"),
    [
        ("swagger-ui-bundle.js", "text/javascript", b"/*! For license information"),
        ("swagger-ui.css", "text/css", b".swagger-ui"),
        ("favicon.png", "image/png", b"\x89PNG"),
    ],
)
def test_each_asset_is_served(api: Api, name: str, media_type: str, starts: bytes) -> None:
    answer = api.ask("GET", f"/api/docs/{name}", token=None)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media_type)
    assert answer.content.startswith(starts)


@pytest.mark.parametrize("name", ["index.html", "..%2Fcore.py", "redoc.standalone.js"])
def test_no_other_file_is_served(api: Api, name: str) -> None:
    assert api.ask("GET", f"/api/docs/{name}", token=None).status_code == 404
