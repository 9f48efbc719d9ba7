"""Opaque page tokens: what a caller passes back to get the next page.

A token is URL-safe base64 of a small JSON object. It carries the offset and a
fingerprint of the query, so a token from one search cannot silently page
through another.

>>> tok = encode_token(100, "runs|metrics.acc > 0.9")
>>> decode_token(tok, "runs|metrics.acc > 0.9")
100
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from keel.entities import PagedList
from keel.errors import InvalidParameter

T = TypeVar("T")


def _fingerprint(query: str) -> str:
    return hashlib.blake2s(query.encode(), digest_size=6).hexdigest()


def encode_token(offset: int, query: str) -> str:
    raw = json.dumps({"o": offset, "q": _fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str | None, query: str) -> int:
    """The offset a token stands for; 0 for no token. Raises InvalidParameter if bad."""
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["o"]
        fingerprint = data["q"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidParameter(
            f"Invalid page token {token[:60]!r}: pass back the next_page_token of the "
            "previous page unchanged."
        ) from exc
    if not isinstance(offset, int) or offset < 0:
        raise InvalidParameter(f"Invalid page token {token[:60]!r}: bad offset.")
    if fingerprint != _fingerprint(query):
        raise InvalidParameter(
            "This page token belongs to a different search (other filter, order or "
            "experiments). Start again without a page token."
        )
    return offset


def collect_pages(
    fetch: Callable[[int, str | None], PagedList[T]],
    limit: int | None = None,
    page_size: int = 1000,
) -> tuple[list[T], str | None]:
    """Follow page tokens until ``limit`` items (``None``: all) or the last page.

    ``fetch(max_results, page_token)`` returns one page. Returns the items and
    the token of the next page (``None`` when nothing is left).

    >>> pages = {None: PagedList([1, 2], "b"), "b": PagedList([3], None)}
    >>> collect_pages(lambda n, tok: pages[tok], page_size=2)
    ([1, 2, 3], None)
    >>> collect_pages(lambda n, tok: pages[tok], limit=2, page_size=2)
    ([1, 2], 'b')
    """
    items: list[T] = []
    token: str | None = None
    while True:
        want = page_size if limit is None else min(page_size, limit - len(items))
        if want <= 0:
            return items, token
        page = fetch(want, token)
        items.extend(page.items)
        token = page.next_page_token
        if not token:
            return items, None
