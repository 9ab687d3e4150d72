"""Encryption of connection secrets with the configured key, and masking in attempt logs."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from phloem.errors import SecretError
from phloem.runner.logs import AttemptLog, attempt_logger
from phloem.secrets import (
    KEY_ENV,
    Cipher,
    Masker,
    configured_cipher,
    load_key,
    mask,
    masking,
    register,
)


def test_masker_replaces_secrets_and_their_url_quoted_forms() -> None:
    m = Masker(["s3cr3t/pw@x"])
    assert m.mask("pw is s3cr3t/pw@x.") == "pw is ***."
    assert m.mask("in a uri: user:s3cr3t%2Fpw%40x@host") == "in a uri: user:***@host"
    assert m.mask("nothing here") == "nothing here"


def test_masker_ignores_short_and_empty_secrets() -> None:
    m = Masker(["abc", "", None])
    assert len(m) == 0
    assert m.mask("abc abc") == "abc abc"


def test_masker_prefers_the_longest_secret() -> None:
    m = Masker(["pass", "password123"])
    assert m.mask("password123 pass") == "*** ***"


def test_masker_handles_regex_characters() -> None:
    m = Masker(["a.b*c(d)"])
    assert m.mask("x a.b*c(d) aXbbc(d)") == "x *** aXbbc(d)"


def test_register_feeds_only_the_active_masker() -> None:
    register("outside-any-attempt")  # no attempt: nothing to do, no error
    assert mask("outside-any-attempt") == "outside-any-attempt"
    m = Masker()
    with masking(m):
        register("inside-secret")
        assert mask("x inside-secret") == "x ***"
    assert m.mask("inside-secret") == "***"
    assert mask("inside-secret") == "inside-secret"


def test_attempt_log_masks_every_write(tmp_path: Path) -> None:
    m = Masker(["hunter22"])
    log = AttemptLog(str(tmp_path / "a.log"), m)
    stream = io.StringIO()
    logger = attempt_logger("t", stream)
    print("print hunter22", file=stream)
    logger.info("logged %s", "hunter22")
    log.write(stream.getvalue().encode())
    m.add("later-secret")  # learnt during the attempt: masked from then on
    log.write(b"later-secret\n")
    log.close()
    text = (tmp_path / "a.log").read_text()
    assert "hunter22" not in text and "later-secret" not in text
    assert text.count("***") == 3


def test_cipher_round_trip_and_wrong_key() -> None:
    key = Fernet.generate_key()
    token = Cipher(key).encrypt("postgresql://u:pw@h/db")
    assert "pw@h" not in token
    assert Cipher(key.decode()).decrypt(token) == "postgresql://u:pw@h/db"
    other = Cipher(Fernet.generate_key())
    with pytest.raises(SecretError, match="connection 'wh' cannot be decrypted with the config"):
        other.decrypt(token, "connection 'wh'")


def test_cipher_rotation_first_key_encrypts_any_decrypts() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Cipher(old).encrypt("x")
    rotated = Cipher(f"{new},{old}")
    assert rotated.decrypt(token) == "x"
    assert Cipher(new).decrypt(rotated.encrypt("y")) == "y"


@pytest.mark.parametrize("bad", ["not-a-key", "", " , "])
def test_invalid_key_is_a_clear_error(bad: str) -> None:
    with pytest.raises(SecretError, match="key"):
        Cipher(bad)


def test_key_file_created_on_first_use_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "home" / "secret.key"
    assert load_key(path, create=False) is None
    assert not path.exists()
    key = load_key(path, create=True)
    assert key and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path, create=True) == key  # stable afterwards
    Cipher(key)  # a valid key


def test_env_key_wins_over_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, env_key)
    path = tmp_path / "secret.key"
    token = configured_cipher(path, create=True).encrypt("abc")
    assert Cipher(env_key).decrypt(token) == "abc"
    assert not path.exists()


def test_reading_without_any_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SecretError, match=f"no secret key is configured: set {KEY_ENV}"):
        configured_cipher(tmp_path / "secret.key")


def test_configured_cipher_uses_phloem_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    token = configured_cipher(create=True).encrypt("abc")
    assert (home / "secret.key").exists()
    assert configured_cipher().decrypt(token) == "abc"
