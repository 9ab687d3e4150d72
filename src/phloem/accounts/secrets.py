"""The secrets of accounts and how each is kept at rest.

- Passwords are chosen by people, so they may be guessable: they are kept as argon2id hashes
  (argon2-cffi), slow on purpose so a stolen database does not give them away.
- API tokens and session ids are made here, 256 random bits each: nobody can guess one, slow
  hash or not, so they are kept as SHA-256 and looked up by that hash in one indexed query.
  A slow hash there would only add its cost to every API request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import Any

#: tokens start with this, so a leaked one is easy to recognise (and to scan for)
TOKEN_PREFIX = "phl_"


@lru_cache(maxsize=1)
def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:  # pragma: no cover - the server extra brings it
        from phloem.errors import PhloemError

        raise PhloemError(
            "accounts need the argon2-cffi package: pip install 'phloem[server]'"
        ) from None
    return PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify_password(stored_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _decoy() -> str:
    return hash_password(secrets.token_urlsafe(16))


def waste_a_verify(password: str) -> None:
    """As long as a real check, for a user who does not exist: the answer's timing must not
    tell which user names exist."""
    verify_password(_decoy(), password)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_password() -> str:
    return secrets.token_urlsafe(18)


def digest(secret: str) -> str:
    """What the store keeps of a token or session id."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_of(session_secret: str) -> str:
    """The CSRF token of a session: derived from its secret, so it needs no storage and is
    worthless without the cookie it belongs to."""
    mac = hmac.new(session_secret.encode(), b"phloem-csrf", hashlib.sha256)
    return mac.hexdigest()


__all__ = [
    "TOKEN_PREFIX",
    "csrf_of",
    "digest",
    "hash_password",
    "new_password",
    "new_secret",
    "new_token",
    "verify_password",
    "waste_a_verify",
]
