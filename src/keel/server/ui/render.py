"""One response, three shapes: a full page, an htmx fragment, or the page's JSON twin.

Every UI handler builds a plain, JSON-ready ``data`` dict and calls
:func:`respond`. The same URL then answers

- a fresh load (address bar, reload, a link from a mail) with the full page;
- htmx (``HX-Request: true``, not a history restore) with only the page's
  ``content`` block, swapped into ``#main``;
- ``?format=json`` or ``Accept: application/json`` with ``data`` itself.

So every pushed URL is a working deep link, and the JSON twin is, by
construction, the data the page shows. Templates autoescape everything;
nothing from users reaches the page unescaped.

>>> env = environment()
>>> env.from_string("{{ x }}").render(x="<script>alert(1)</script>")
'&lt;script&gt;alert(1)&lt;/script&gt;'
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import Response

from keel import __version__, formatting

TEMPLATES = Path(str(resources.files("keel.server.ui") / "templates"))
STATIC = Path(str(resources.files("keel.server.ui") / "static"))

# Pages are never framed by others, load scripts only from /static, and
# inline styles only as attributes (uPlot sizes its canvases that way).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; frame-src 'self'; frame-ancestors 'self'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Vary": "HX-Request, Accept",
    "Cache-Control": "no-store",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja environment: templates from the package, autoescape on, Keel's filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=formatting.number,
        size=formatting.size,
        duration=formatting.duration_ms,
        time=formatting.timestamp_ms,
        tojson_attr=_json_attribute,
    )
    env.globals.update(version=__version__, query=query_string)
    return env


def wants_json(request: Request) -> bool:
    """``?format=json``, or an Accept header that asks for JSON before HTML."""
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def is_fragment_request(request: Request) -> bool:
    """htmx asking for a part of the page (not restoring a whole page from history)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"
    )


def respond(
    request: Request,
    template: str,
    data: dict[str, Any],
    *,
    title: str,
    status: int = 200,
    nav: str = "",
) -> Response:
    """The page, its fragment or its JSON twin for this request (see the module doc)."""
    if wants_json(request):
        return Response(
            orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
            status_code=status,
            media_type="application/json",
            headers={"Vary": "HX-Request, Accept", "Cache-Control": "no-store"},
        )
    page = environment().get_template(template)
    context = {
        **data,
        "data": data,
        "title": title,
        "nav": nav,
        "request_path": request.url.path,
        "csrf_token": request.state.csrf_token if hasattr(request.state, "csrf_token") else "",
    }
    if is_fragment_request(request):
        ctx = page.new_context(context)
        body = "".join(page.blocks["content"](ctx))
        # htmx takes the page title from a <title> in the fragment.
        html = f"<title>{formatting.esc(title)} · Keel</title>{body}"
    else:
        html = page.render(context)
    return Response(html, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


def error_page(request: Request, status: int, message: str) -> Response:
    """A page (or JSON twin) saying what went wrong, with the status it deserves."""
    data = {"error": {"status": status, "message": message}}
    return respond(request, "error.html", data, title="Error", status=status)


def query_string(base: dict[str, Any], **changes: Any) -> str:
    """``?a=1&b=2``: ``base`` with ``changes`` applied; None or "" drops a key.

    >>> query_string({"q": "x", "page": 2}, page=None, sort="name")
    '?q=x&sort=name'
    """
    merged = {**base, **changes}
    pairs = [(k, v) for k, v in merged.items() if v not in (None, "", [], ())]
    flat: list[tuple[str, Any]] = []
    for key, value in pairs:
        if isinstance(value, list | tuple):
            flat.extend((key, v) for v in value)
        else:
            flat.append((key, value))
    return "?" + urlencode(flat) if flat else "?"


def _json_attribute(value: Any) -> str:
    """JSON for a ``data-*`` attribute (autoescape then quotes it safely)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
