"""Secrets: connection URIs encrypted at rest, and masked wherever an attempt writes.

The key comes from configuration: ``PHLOEM_SECRET_KEY`` (a Fernet key; several keys separated
by commas rotate them: the first encrypts, any of them decrypts), else the file
``<PHLOEM_HOME>/secret.key``, created with mode 0600 the first time something is encrypted.
Every process that reads connections from a shared store must use the same key.

Masking: each attempt has a :class:`Masker`; ``phloem.connection()`` registers the secrets it
hands out with the masker of the attempt running now, and the attempt's log file and error
message pass through it, so a password printed, logged or raised reads ``***``. A task's
output is data and is stored as returned: do not return secrets.

``cryptography`` is imported only to encrypt or decrypt, so the runner can import this module
for masking at no cost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

from phloem.errors import SecretError

if TYPE_CHECKING:
    from phloem.config import Settings

KEY_ENV = "PHLOEM_SECRET_KEY"
MASK = "***"
#: Shorter strings are not masked: hiding every "a" or "db" would garble the logs.
MIN_SECRET_LENGTH = 4

_NEW_KEY_HINT = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


# -- masking -------------------------------------------------------------------------------------


class Masker:
    """Replaces every known secret in a text with ``***``.

    A secret is also recognised in its URL-quoted forms, as it appears inside a URI.
    """

    __slots__ = ("_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        new = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            for form in (secret, quote(secret, safe=""), quote_plus(secret)):
                if form not in self._secrets:
                    new.add(form)
        if not new:
            return
        self._secrets |= new
        longest_first = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in longest_first))

    def mask(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __len__(self) -> int:
        return len(self._secrets)


_current: ContextVar[Masker | None] = ContextVar("phloem_masker", default=None)


@contextmanager
def masking(masker: Masker) -> Iterator[Masker]:
    """Make ``masker`` the one :func:`register` feeds while the block runs (one attempt)."""
    token = _current.set(masker)
    try:
        yield masker
    finally:
        _current.reset(token)


def register(*secrets: str | None) -> None:
    """Mask these strings in the running attempt's log and error (no-op outside an attempt)."""
    masker = _current.get()
    if masker is not None:
        masker.add(*secrets)


def mask(text: str) -> str:
    """``text`` with the running attempt's known secrets masked."""
    masker = _current.get()
    return masker.mask(text) if masker is not None else text


# -- encryption ----------------------------------------------------------------------------------


class Cipher:
    """Encrypts and decrypts secrets with the configured key(s)."""

    def __init__(self, keys: str | bytes) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        text = keys.decode() if isinstance(keys, bytes) else keys
        parts = [k.strip() for k in text.split(",") if k.strip()]
        if not parts:
            raise SecretError(f"the secret key is empty; {_NEW_KEY_HINT}")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except (ValueError, TypeError):
            raise SecretError(
                "the configured secret key is not valid: it must be 32 url-safe base64-encoded "
                f"bytes; {_NEW_KEY_HINT}"
            ) from None

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, what: str = "the secret") -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretError(
                f"{what} cannot be decrypted with the configured key; every process that reads "
                f"this store needs the key it was encrypted with (set {KEY_ENV}, or copy "
                "secret.key into PHLOEM_HOME), or add the connection again"
            ) from None


def load_key(key_path: Path | str, *, create: bool, key: str | None = None) -> str | None:
    """The configured key: ``key`` (``Settings.secret_key``, from ``PHLOEM_SECRET_KEY``), else
    the key file (made when ``create``)."""
    if key:
        return key
    path = Path(key_path)
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return None
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(fresh + b"\n")
    return fresh.decode("ascii")


def configured_cipher(
    key_path: Path | str | None = None,
    *,
    create: bool = False,
    settings: Settings | None = None,
) -> Cipher:
    """A cipher with the key of ``settings`` (default: read from the environment), or the key
    file at ``key_path`` (default: the home's); ``create`` makes the key file if there is
    none."""
    if settings is None:
        from phloem.config import Settings

        settings = Settings.from_env()
    if key_path is None:
        key_path = settings.secret_key_path
    key = load_key(key_path, create=create, key=settings.secret_key)
    if key is None:
        raise SecretError(
            f"no secret key is configured: set {KEY_ENV} or put the key file at {key_path} "
            "(it is created when the first connection is added)"
        )
    return Cipher(key)
