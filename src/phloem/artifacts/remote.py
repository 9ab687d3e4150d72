"""Credentials and endpoints for remote artifact stores, from a phloem connection.

``PHLOEM_ARTIFACTS_CONNECTION=NAME`` names a connection (``phloem connections add``) whose
URI carries them, so they are encrypted at rest like every connection and never sit in the
environment of each worker::

    s3://ACCESS_KEY:SECRET_KEY@minio.internal:9000?secure=false&region=eu-west-1

gives key and secret, ``endpoint_url`` ``http://minio.internal:9000`` (``https`` unless
``secure=false``) and the region. With no host, the endpoint is AWS's own. Without a
connection, the file system reads the usual environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, profiles).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phloem.errors import PhloemError

_S3_TYPES = frozenset({"s3", "s3a", "aws", "minio"})


def storage_options(
    name: str,
    conn_type: str,
    host: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extras: Mapping[str, str],
) -> dict[str, Any]:
    """fsspec options for the artifact store from connection ``name``'s parts."""
    if conn_type.lower() not in _S3_TYPES:
        raise PhloemError(
            f"connection '{name}' is of type '{conn_type}': the artifact store takes an S3 "
            "connection (s3://KEY:SECRET@HOST:PORT?secure=false&region=...)"
        )
    options: dict[str, Any] = {}
    if login:
        options["key"] = login
    if password:
        options["secret"] = password
    client: dict[str, Any] = {}
    endpoint = extras.get("endpoint_url")
    if endpoint is None and host:
        secure = extras.get("secure", "true").lower() not in ("false", "0", "no")
        endpoint = f"{'https' if secure else 'http'}://{host}" + (f":{port}" if port else "")
    if endpoint:
        client["endpoint_url"] = endpoint
    region = extras.get("region") or extras.get("region_name")
    if region:
        client["region_name"] = region
    if client:
        options["client_kwargs"] = client
    if extras.get("token"):
        options["token"] = extras["token"]
    return options


__all__ = ["storage_options"]
