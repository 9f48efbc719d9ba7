"""The UI's two request checks: the Host header, and a CSRF token on every change.

**Host.** A page in a victim's browser can point a name it controls at
127.0.0.1 (DNS rebinding) and then use the server, API and UI alike, as
"same origin". Answering only Host names the operator expects stops that: by
default the loopback names, the address ``keel server`` listens on, and any
IP address literal (rebinding needs a name, so ``http://10.0.0.5:5000`` keeps
working); ``--allowed-hosts`` (``KEEL_ALLOWED_HOSTS``, comma-separated, ``*``
for any) adds names.

**CSRF.** Every state-changing UI request must be JSON and carry the
``X-Keel-CSRF`` header equal to the ``keel_csrf`` cookie (SameSite=Strict,
HttpOnly; pages embed the token in a ``<meta>``). A cross-site form can send
neither JSON nor a custom header without a CORS preflight the server never
grants.

>>> allowed = parse_allowed_hosts("ml.example.org, 10.0.0.5")
>>> host_allowed("ml.example.org:5000", allowed), host_allowed("evil.test", allowed)
(True, False)
>>> host_allowed("127.0.0.1:5000", allowed), host_allowed("[::1]:5000", allowed)
(True, True)
>>> host_allowed("192.168.1.20:5000", allowed), host_allowed("localhost.evil.test", allowed)
(True, False)
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets

from starlette.requests import Request

ALLOWED_HOSTS_ENV = "KEEL_ALLOWED_HOSTS"
CSRF_COOKIE = "keel_csrf"
CSRF_HEADER = "x-keel-csrf"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Refused(Exception):
    """A request the UI will not serve: ``status`` and a message saying what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_allowed_hosts(text: str | None) -> frozenset[str]:
    """Host names from a comma-separated list, lower case, without ports."""
    names = {_bare_host(part) for part in (text or "").split(",") if part.strip()}
    return frozenset(names) | LOOPBACK_NAMES


def allowed_hosts_from_environment() -> frozenset[str]:
    return parse_allowed_hosts(os.environ.get(ALLOWED_HOSTS_ENV))


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """Is this Host header one the server answers? (No header: not a browser; yes.)"""
    host = _bare_host(host_header)
    return not host or "*" in allowed or host in allowed or _is_ip(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def refusal(host_header: str) -> str:
    """What a refused request is told: the name, and the option that allows it."""
    return (
        f"This server does not answer to the host name {host_header!r}. If that is its name, "
        f"restart it with --allowed-hosts {_bare_host(host_header) or 'NAME'} "
        f"(or set {ALLOWED_HOSTS_ENV})."
    )


def _bare_host(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:5000
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value


def check_host(request: Request, allowed: frozenset[str]) -> None:
    host = request.headers.get("host", "")
    if not host_allowed(host, allowed):
        raise Refused(403, refusal(host))


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (then set it as a cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def check_change(request: Request) -> None:
    """Refuse a state-changing request that is not JSON with the page's CSRF token."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refused(415, "Changes must be sent as application/json.")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise Refused(
            403, "The CSRF token is missing or does not match; reload the page and try again."
        )
