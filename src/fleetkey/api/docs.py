"""The admin API's documentation page, ``/api/docs``, with every asset served by fleetkey.

FastAPI's own page loads Swagger UI from a CDN, so it is blank where phones' networks have no
internet. The page here is FastAPI's, pointed at Swagger UI's script, stylesheet and icon as
the ``fastapi-offline`` package ships them (Swagger UI 5, which renders OpenAPI 3.1), answered
at ``/api/docs/<file>``. Nothing else of that package is used.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

PACKAGE: Final = "fastapi_offline"  # ships Swagger UI's dist files in its static/ folder
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
DOCS: Final = "/api/docs"


def asset(name: str) -> bytes:
    """One of Swagger UI's files, as the package ships it."""
    return resources.files(PACKAGE).joinpath("static", name).read_bytes()


def install(app: FastAPI, title: str) -> None:
    """``GET /api/docs`` and its assets; ``app`` was made with ``docs_url=None``."""

    @app.get(DOCS, include_in_schema=False)
    def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/api/openapi.json",
            title=title,
            swagger_js_url=f"{DOCS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS}/favicon.png",
        )

    @app.get(DOCS + "/{name}", include_in_schema=False)
    def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            return Response(status_code=404)
        return Response(
            asset(name), media_type=ASSETS[name], headers={"cache-control": "max-age=86400"}
        )
