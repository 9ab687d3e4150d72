"""Why a store's database cannot be used, said in one line: which database, what is wrong with
it, and what to do (never the password in its URL)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from phloem.errors import StoreError, first_line

_FIX_URL = (
    "set PHLOEM_DB_URL to a URL such as sqlite:////path/to/phloem.db or "
    "postgresql+psycopg://user:password@host:5432/dbname, or unset it to use PHLOEM_HOME"
)


def masked(url: str) -> str:
    """``url`` with any password replaced, even when the URL does not parse: everything
    between the user's ``:`` and the last ``@`` goes (a password may hold ``/`` or ``@``)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (sep and at and colon) or "/" in user:
        return url
    return f"{scheme}://{user}:***@{host}"


def _hide_password(url: str, text: str) -> str:
    """``text`` (a driver's message) without the URL's password, nor the pieces of it a
    driver that split the URL elsewhere may quote (as a host name, say)."""
    _, _, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    _, colon, password = userinfo.partition(":")
    if not (at and colon and password):
        return text
    pieces = {password, *re.split(r"[@/:]", password)}
    for piece in sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def bad_url(url: str, exc: BaseException) -> StoreError:
    """The URL cannot be understood: a typo, an unknown driver, a port that is not a number."""
    reason = first_line(exc)
    name = type(exc).__name__
    if name == "NoSuchModuleError":
        scheme = url.split("://", 1)[0]
        reason = f"there is no database driver '{scheme}' (use sqlite or postgresql+psycopg)"
    elif name == "ArgumentError":
        reason = "it is not of the form dialect+driver://user:password@host:port/database"
    elif isinstance(exc, ValueError) and "port" not in reason:
        reason = f"its port is not a number ({reason})"
    reason = _hide_password(url, reason)
    return StoreError(f"the database URL {masked(url)!r} is not valid: {reason}; {_FIX_URL}")


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite") or "://" not in url:
        return None
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:].split("?", 1)[0])


def _writable(folder: Path) -> str | None:
    """None if a file can be created in ``folder``, else why not (tried, not guessed: as
    root, permission bits say nothing about a read-only mount or an immutable folder)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def sqlite_trouble(url: str, exc: BaseException) -> StoreError | None:
    """A SQLite database that cannot be opened or written, explained (path, cause, fix);
    None for any other error."""
    orig = getattr(exc, "orig", None) or exc
    text = first_line(orig)
    path = _sqlite_path(url)
    if path is None:
        return None
    folder = path.parent
    where = f"the SQLite database {path}"
    fix = "set PHLOEM_HOME to a writable folder, or PHLOEM_DB_URL to another database"
    if "readonly" in text or "read-only" in text:
        problem = _writable(folder)
        why = f"; its folder {folder} is not writable either ({problem})" if problem else ""
        return StoreError(f"{where} is read-only ({text}){why}; make it writable, or {fix}")
    if "unable to open" not in text:
        return None
    if not folder.is_dir():
        return StoreError(f"{where} cannot be opened: its folder {folder} does not exist; {fix}")
    problem = _writable(folder)
    if problem is not None:
        return StoreError(
            f"{where} cannot be opened or created: its folder {folder} is read-only or not "
            f"writable ({problem}); {fix}"
        )
    return StoreError(f"{where} cannot be opened ({text}); {fix}")


def cannot_open(url: str, exc: BaseException) -> StoreError:
    """The database was reached for but could not be used."""
    known = sqlite_trouble(url, exc)
    if known is not None:
        return known
    orig = getattr(exc, "orig", None) or exc
    text = first_line(orig)
    text = _hide_password(url, text)
    return StoreError(
        f"cannot use the store's database {masked(url)}: {type(orig).__name__}: {text}; "
        "check PHLOEM_DB_URL and that the database server is up"
    )
