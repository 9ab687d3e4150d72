"""The login's per-address rate limit behind a reverse proxy: ``X-Forwarded-For`` counts only
when the peer is a trusted proxy (``PHLOEM_TRUSTED_PROXIES``), and only back to the first
address that is not one, so a forged header cannot pick the address a failure counts against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from phloem.config import Settings
from phloem.errors import PhloemError
from phloem.server.proxies import TrustedProxies
from server_fixtures import PASSWORD, make_api, start_server

LOGIN = "/api/v1/auth/login"


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ((), "10.0.0.2", ["1.2.3.4"], "10.0.0.2"),  # no trusted proxy: the header is ignored
        (("10.0.0.2",), "10.0.0.9", ["1.2.3.4"], "10.0.0.9"),  # from a peer not trusted
        (("10.0.0.2",), "10.0.0.2", ["1.2.3.4"], "1.2.3.4"),
        (("10.0.0.2",), "10.0.0.2", [], "10.0.0.2"),  # a trusted peer that names nobody
        # a client that forges the header: the proxy appends the real address last
        (("10.0.0.2",), "10.0.0.2", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
        (("10.0.0.0/24",), "10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.0.0.7"], "1.2.3.4"),
        (("10.0.0.0/24",), "10.0.0.2", ["6.6.6.6", "1.2.3.4, 10.0.0.7"], "1.2.3.4"),
        (("10.0.0.0/24",), "10.0.0.2", ["10.0.0.5, 10.0.0.7"], "10.0.0.5"),  # all trusted
        (("10.0.0.2",), "10.0.0.2", ["6.6.6.6, not-an-address"], "not-an-address"),
        (("::1",), "::1", ["2001:db8::1"], "2001:db8::1"),
        (("127.0.0.1",), "::ffff:127.0.0.1", ["::ffff:1.2.3.4"], "1.2.3.4"),
    ],
)
def test_the_client_address(
    trusted: tuple[str, ...], peer: str, forwarded: list[str], client: str
) -> None:
    assert TrustedProxies(trusted).client(peer, forwarded) == client


def test_the_setting_is_read_and_checked(tmp_path: Path) -> None:
    env = {"PHLOEM_HOME": str(tmp_path), "PHLOEM_TRUSTED_PROXIES": " 127.0.0.1, 10.0.0.0/8,"}
    assert Settings.from_env(environ=env).trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert Settings.from_env(environ={"PHLOEM_HOME": str(tmp_path)}).trusted_proxies == ()
    with pytest.raises(PhloemError, match=r"PHLOEM_TRUSTED_PROXIES: 'proxy\.local' is not"):
        Settings.from_env(environ={**env, "PHLOEM_TRUSTED_PROXIES": "proxy.local"})


def _fail(client: Any, address: str | None, user: str) -> int:
    headers = {"X-Forwarded-For": address} if address else {}
    r = client.post(LOGIN, json={"user": user, "password": "wrong"}, headers=headers)
    return int(r.status_code)


def test_failed_logins_count_per_forwarded_address_from_a_trusted_proxy(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from phloem.server.sessions import LoginLimits

    a = make_api(
        "memory",
        tmp_path / "home",
        login_limits=LoginLimits(per_user=100, per_address=3),
        trusted_proxies=["10.0.0.2"],
    )
    try:
        proxy = TestClient(a.app, client=("10.0.0.2", 40000))
        for i in range(3):
            assert _fail(proxy, "6.6.6.6, 1.2.3.4", f"u{i}") == 401
        # 1.2.3.4 is locked out (whatever it forges to the left), not the proxy's other clients
        assert _fail(proxy, "7.7.7.7, 1.2.3.4", "u9") == 429
        r = proxy.post(LOGIN, json={"user": "admin", "password": PASSWORD},
                       headers={"X-Forwarded-For": "5.6.7.8"})
        assert r.status_code == 200
        # a client that is not a proxy cannot choose its address by the header
        direct = TestClient(a.app, client=("10.0.0.9", 40000))
        for i in range(3):
            assert _fail(direct, f"9.9.9.{i}", f"v{i}") == 401
        assert _fail(direct, "9.9.9.100", "v9") == 429
    finally:
        a.ph.close()


@pytest.mark.parametrize("trusted", [False, True])
def test_a_live_server_believes_forwarded_addresses_only_from_trusted_proxies(
    processes: object, tmp_path: Path, trusted: bool
) -> None:
    """uvicorn's own proxy handling (which believes any local peer) is off; the setting
    decides. The test's requests come from 127.0.0.1, as from a proxy on the same machine."""
    import httpx

    from phloem.server.sessions import LoginLimits

    extra = {"PHLOEM_TRUSTED_PROXIES": "127.0.0.1,::1"} if trusted else {}
    server = start_server(processes, tmp_path / "home", args=("--no-scheduler",),
                          extra_env=extra)
    limit = LoginLimits().per_address
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for i in range(limit):
            assert _fail(c, "1.2.3.4", f"u{i}") == 401
        # another forwarded client: its own count if the proxy is trusted, else 127.0.0.1's
        assert _fail(c, "5.6.7.8", "v") == (401 if trusted else 429)
        assert _fail(c, "1.2.3.4", "w") == 429
