"""Hostile artifact paths for the traversal tests: every one must be refused.

Each :class:`Hostile` has a stable, unique ``id`` (used as the pytest id), the
``raw`` string exactly as an attacker would write it, its ``family`` and its
``scope``. The strings aim at ``canary.txt`` one directory above the artifact
root (or at ``/etc/passwd``), so a traversal that worked would read or write a
file the tests watch. The families:

``dots``
    Every spelling of a ``..`` component crossed with every spelling of a
    separator: ``..``, ``%2e%2e`` in all cases, half-encoded ``.%2e`` and
    ``%2e.``, double- and triple-encoded ``%252e%252e``, overlong UTF-8
    (``%c0%ae``, ``%e0%80%ae``), and ``/``, ``%2f``, ``%252f``, ``\\``,
    ``%5c``, ``%255c``, mixed separators.
``absolute``
    POSIX absolute paths (also percent-encoded and doubled), drive letters
    (``C:\\``, ``C:/``, ``c:x``), UNC shares (``\\\\server\\share``) and
    Windows device paths (``\\\\?\\C:\\``).
``scheme``
    ``file:`` in its forms, schemeless ``//host/x``, and other schemes
    (``http``, ``s3``, ``mlflow-artifacts``, ``runs``, ``models``) carrying a
    traversal.
``delimiters``
    ``;``, ``?`` and ``#`` in front of a traversal (``a;/../../x``,
    ``a?/../x``, ``a#/../x``) and Tomcat's ``..;``, raw and encoded: a parser
    that cuts the string at the delimiter must not see a different path from
    one that keeps it.
``nul``
    NUL bytes, raw and as ``%00``, ``%2500`` and overlong ``%c0%80``.
``control``
    Newline, carriage return, tab, DEL and ESC in front of a traversal.
``unicode``
    Characters that NFKC-normalise (or Windows' best-fit code pages map) to
    ``.``, ``/`` or ``\\``: fullwidth full stop and solidus, the two-dot
    leader, small full stop, fullwidth reverse solidus.
``symlink``
    Paths through ``escape``, a symlink the tests plant in the artifact root
    pointing at its parent, and ``loop``, a symlink to itself.

``scope`` says where a string is hostile. ``"all"``: an artifact path, a
model-version ``source`` and an experiment ``artifact_location`` alike.
``"proxy"``: only where the server maps the path onto its own files (the
overlong, unicode and symlink families mean nothing to a URI parser: they are
ordinary characters until a file system or a normalising client sees them).

>>> items = corpus()
>>> len(items) >= 100, len({i.id for i in items}) == len(items)
(True, True)
>>> all(i.scope in SCOPES for i in items)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["all", "proxy"]
SCOPES: tuple[Scope, ...] = ("all", "proxy")
TARGET = "canary.txt"  # the tests keep this file one level above the artifact root
SYMLINK_OUT = "escape"  # ... and plant this symlink in the root, pointing at its parent
SYMLINK_LOOP = "loop"  # ... and this one, pointing at itself


@dataclass(frozen=True)
class Hostile:
    """One hostile path: ``id`` names it in test ids, ``raw`` is sent as is."""

    id: str
    raw: str
    family: str
    scope: Scope = "all"


# (id fragment, text, scope): each spells one ".." component.
DOTS: tuple[tuple[str, str, Scope], ...] = (
    ("dotdot", "..", "all"),
    ("pct-lower", "%2e%2e", "all"),
    ("pct-upper", "%2E%2E", "all"),
    ("pct-mixed", "%2E%2e", "all"),
    ("half-right", ".%2e", "all"),
    ("half-left", "%2e.", "all"),
    ("double", "%252e%252e", "all"),
    ("double-upper", "%252E%252E", "all"),
    ("triple", "%25252e%25252e", "all"),
    ("overlong2", "%c0%ae%c0%ae", "proxy"),
    ("overlong3", "%e0%80%ae%e0%80%ae", "proxy"),
    ("double-overlong", "%25c0%25ae%25c0%25ae", "proxy"),
)

# (id fragment, text): each spells one separator.
SEPARATORS: tuple[tuple[str, str], ...] = (
    ("slash", "/"),
    ("pct2f", "%2f"),
    ("pct2F", "%2F"),
    ("double2f", "%252f"),
    ("backslash", "\\"),
    ("pct5c", "%5c"),
    ("double5c", "%255c"),
)


def _dots() -> list[Hostile]:
    out = []
    for dot_id, dot, scope in DOTS:
        for sep_id, sep in SEPARATORS:
            # Two levels up from a subdirectory: the canary beside the root.
            raw = f"a{sep}{dot}{sep}{dot}{sep}{TARGET}"
            out.append(Hostile(f"dots-{dot_id}-{sep_id}", raw, "dots", scope))
        # Leading, and as the whole path (a listing of the root's parent).
        out.append(Hostile(f"dots-{dot_id}-lead", f"{dot}/{TARGET}", "dots", scope))
        out.append(Hostile(f"dots-{dot_id}-alone", dot, "dots", scope))
        out.append(Hostile(f"dots-{dot_id}-trailing", f"a/{dot}/{dot}", "dots", scope))
    mixed = {
        "mixed-slash-backslash": f"a/..\\..\\{TARGET}",
        "mixed-backslash-slash": f"..\\../{TARGET}",
        "mixed-pct2f-pct5c": f"a%2f..%5c..%2f{TARGET}",
        "mixed-encodings": f"a/%2e./.%2E/{TARGET}",
        "mixed-double-single": f"a/%252e%2e/..%252f{TARGET}",
        "deep": "a/b/c/" + "../" * 8 + TARGET,
        "dot-slash-runs": f"./././../{TARGET}",
        "empty-segments": f"a//..//..//{TARGET}",
        "inside-then-out": f"a/b/../../../{TARGET}",
    }
    out += [Hostile(f"dots-{name}", raw, "dots") for name, raw in mixed.items()]
    return out


_ABSOLUTE = {
    "etc-passwd": "/etc/passwd",
    "etc-passwd-double-slash": "//etc/passwd",
    "etc-passwd-pct": "%2fetc%2fpasswd",
    "etc-passwd-pct-lead": "%2Fetc/passwd",
    "etc-passwd-double": "%252fetc%252fpasswd",
    "root": "/",
    "root-pct": "%2f",
    "drive-backslash": "C:\\Windows\\win.ini",
    "drive-slash": "C:/Windows/win.ini",
    "drive-relative": f"c:{TARGET}",
    "drive-pct": "C%3a%5cWindows%5cwin.ini",
    "unc": "\\\\server\\share\\x",
    "unc-pct": "%5c%5cserver%5cshare%5cx",
    "unc-mixed": "\\\\server/share/x",
    "device": "\\\\?\\C:\\Windows\\win.ini",
    "device-dot": "\\\\.\\C:\\Windows\\win.ini",
    "backslash-root": "\\etc\\passwd",
}

_SCHEME = {
    "file-one-slash": "file:/etc/passwd",
    "file-three-slashes": "file:///etc/passwd",
    "file-localhost": "file://localhost/etc/passwd",
    "file-upper": "FILE:///etc/passwd",
    "file-relative": f"file:../{TARGET}",
    "file-pct": "file%3a%2f%2f%2fetc%2fpasswd",
    "file-double": "file%253a%252f%252f%252fetc%252fpasswd",
    "schemeless-host": "//evil.example/x",
    "schemeless-loopback": "//127.0.0.1/etc/passwd",
    "schemeless-pct": "%2f%2fevil.example%2fx",
    "http-dotdot": f"http://evil.example/../{TARGET}",
    "https-pct-dotdot": "https://127.0.0.1/%2e%2e/%2e%2e/etc/passwd",
    "s3-dotdot": "s3://bucket/prefix/../../x",
    "proxy-dotdot": f"mlflow-artifacts:/../{TARGET}",
    "proxy-host-dotdot": "mlflow-artifacts://evil.example/../../x",
    "proxy-pct-dotdot": "mlflow-artifacts:/..%2f..%2fetc%2fpasswd",
    "runs-dotdot": f"runs:/../../{TARGET}",
    "models-dotdot": "models:/../x",
    "ftp-dotdot": "ftp://evil.example/../x",
}

_DELIMITERS = {
    "semicolon": f"a;/../../{TARGET}",
    "semicolon-params": f"a;x=1/../../{TARGET}",
    "semicolon-lead": f";/../{TARGET}",
    "semicolon-pct": f"a%3b/../../{TARGET}",
    "tomcat-dotdot-semicolon": f"a/..;/..;/{TARGET}",
    "tomcat-pct": f"a/%2e%2e;x/%2e%2e;/{TARGET}",
    "query": f"a?/../../{TARGET}",
    "query-lead": f"?/../{TARGET}",
    "query-pct": f"a%3f/../../{TARGET}",
    "query-double": f"a%253f/../../{TARGET}",
    "fragment": f"a#/../../{TARGET}",
    "fragment-lead": f"#/../{TARGET}",
    "fragment-pct": f"a%23/../../{TARGET}",
    "fragment-double": f"a%2523/../{TARGET}",
    "fragment-alone": "a#b",
    "fragment-pct-alone": "a%23b",
}

_NUL = {
    "raw": "a\x00b",
    "raw-dotdot": f"..\x00/{TARGET}",
    "pct": f"a%00/../../{TARGET}",
    "pct-alone": "a%00b",
    "pct-extension": f"{TARGET}%00.png",
    "double": "a%2500b",
    "overlong": "a%c0%80b",
    "after-dotdot": f"..%00/{TARGET}",
}

_CONTROL = {
    "lf-pct": f"a%0a/../../{TARGET}",
    "crlf-pct": f"a%0d%0a/../../{TARGET}",
    "lf-raw": f"a\n/../../{TARGET}",
    "cr-raw": f"a\r/../../{TARGET}",
    "tab-raw": f"a\t/../../{TARGET}",
    "tab-pct": f"a%09/../../{TARGET}",
    "del-pct": f"a%7f/../../{TARGET}",
    "esc-pct": f"a%1b/../../{TARGET}",
    "lf-double": "a%250ab",
    "lf-alone": "a%0Ab",
}

# NFKC (and Windows' best-fit code pages) turn these into ".", "/" or "\".
_UNICODE = {
    "fullwidth-dots": f"\uff0e\uff0e/{TARGET}",
    "fullwidth-dots-solidus": f"a\uff0f\uff0e\uff0e\uff0f\uff0e\uff0e\uff0f{TARGET}",
    "fullwidth-solidus": f"..\uff0f{TARGET}",
    "fullwidth-reverse-solidus": f"..\uff3c{TARGET}",
    "fullwidth-pct": f"%ef%bc%8e%ef%bc%8e%ef%bc%8f{TARGET}",
    "two-dot-leader": f"\u2025/{TARGET}",
    "one-dot-leaders": f"\u2024\u2024/{TARGET}",
    "small-full-stop": f"\ufe52\ufe52/{TARGET}",
    "fullwidth-number-sign": f"a\uff03/../{TARGET}",
    "fullwidth-drive": "\uff23\uff1a\\Windows",
}

_SYMLINK = {
    "through": f"{SYMLINK_OUT}/{TARGET}",
    "new-file": f"{SYMLINK_OUT}/new.txt",
    "new-dir": f"{SYMLINK_OUT}/sub/new.txt",
    "trailing-slash": f"{SYMLINK_OUT}/",
    "dot-segments": f"./{SYMLINK_OUT}/./{TARGET}",
    "loop": f"{SYMLINK_LOOP}/x",
    "loop-deep": f"{SYMLINK_LOOP}/{SYMLINK_LOOP}/x",
}


# Hostile only as paths on the server's disk: in a URI they escape nothing (a
# fragment, a control character, a U+FFFD, the root itself), so MLflow accepts
# them as sources and locations, and so may Keel.
_PROXY_ONLY = frozenset(
    {
        "absolute-root",
        "absolute-root-pct",
        "delimiters-fragment-alone",
        "delimiters-fragment-pct-alone",
        "nul-overlong",
        "control-lf-double",
        "control-lf-alone",
    }
)


def corpus() -> list[Hostile]:
    """Every hostile path, in a stable order (ids are unique)."""
    items = _dots()
    families: list[tuple[str, dict[str, str], Scope]] = [
        ("absolute", _ABSOLUTE, "all"),
        ("scheme", _SCHEME, "all"),
        ("delimiters", _DELIMITERS, "all"),
        ("nul", _NUL, "all"),
        ("control", _CONTROL, "all"),
        ("unicode", _UNICODE, "proxy"),
        ("symlink", _SYMLINK, "proxy"),
    ]
    for family, table, scope in families:
        for name, raw in table.items():
            item_id = f"{family}-{name}"
            items.append(
                Hostile(item_id, raw, family, "proxy" if item_id in _PROXY_ONLY else scope)
            )
    assert {i.id for i in items} >= _PROXY_ONLY
    return items


def in_scope(scope: Scope) -> list[Hostile]:
    """The items hostile wherever ``scope`` applies (``"proxy"`` includes ``"all"``)."""
    return [i for i in corpus() if scope == "proxy" or i.scope == "all"]
