"""The web console: a static single page served by the worker.

Files live in ``sre_agent/web/static`` (package data): the page, its script
and style, and vendored front-end libraries from the npm registry (uPlot for
charts, Alpine.js for reactivity); no build step at run time. The page calls
the REST API with the user's bearer token, which stays in the browser's
session storage.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faust.web import Request, Response, View

from .http import Api

__all__ = ["STATIC_DIR", "register_console"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain",
}
HEADERS = {
    # Alpine.js evaluates its directives with Function(): 'unsafe-eval' is required
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _load(directory: Path) -> dict[str, tuple[bytes, str]]:
    files = {}
    if directory.is_dir():
        for p in sorted(directory.iterdir()):
            if p.is_file() and p.suffix in TYPES:
                files[p.name] = (p.read_bytes(), TYPES[p.suffix])
    if "index.html" not in files:
        log.warning("web console files not found in %s", directory)
    return files


def register_console(api: Api, directory: Path = STATIC_DIR) -> None:
    app = api.ctx.app
    files = _load(directory)

    def page(view: View) -> Response:
        if "index.html" not in files:
            return view.json({"error": "web console files are not installed"}, status=404)
        body, ctype = files["index.html"]
        return view.bytes(
            body, content_type=ctype, headers={**HEADERS, "Cache-Control": "no-cache"}
        )

    @app.page("/")
    class Root(View):
        async def get(self, request: Request) -> Response:
            return page(self)

    @app.page("/console")
    class Console(View):
        async def get(self, request: Request) -> Response:
            return page(self)

    @app.page("/console/static/{name}")
    class Static(View):
        async def get(self, request: Request, name: str = "") -> Response:
            found = files.get(name)
            if found is None:
                return self.json({"error": f"no such console file: {name!r}"}, status=404)
            body, ctype = found
            return self.bytes(
                body, content_type=ctype, headers={**HEADERS, "Cache-Control": "max-age=300"}
            )
