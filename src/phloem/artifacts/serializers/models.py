"""Model formats a model registry may choose explicitly: XGBoost's and LightGBM's own files
and skops. They are never picked for a task's return value (joblib is); ``by_name`` knows
them so a registered model loads back with the format it was stored in.

Native files outlive the library version that wrote them (joblib pickles do not), and skops
files load without running arbitrary pickle code. Each is stored as one header line (JSON: the
class to rebuild) followed by the library's own bytes.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from typing import Any

from phloem.errors import SerializationError

from .base import full_type_name, top_package


def _envelope(value: object, payload: bytes) -> bytes:
    header = json.dumps({"class": full_type_name(value)}).encode()
    return header + b"\n" + payload


def _open(data: bytes, package: str) -> tuple[type[Any], bytes]:
    header, _, payload = data.partition(b"\n")
    path = str(json.loads(header)["class"])
    module, _, name = path.rpartition(".")
    if module.partition(".")[0] != package:
        raise SerializationError(f"a {package} model file names class {path}, not a {package} one")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls, payload


class XGBoostSerializer:
    """XGBoost boosters and scikit-learn wrappers, in XGBoost's UBJSON model format."""

    name = "xgboost"
    ext = "xgb"

    def handles(self, value: object) -> bool:
        return top_package(value) == "xgboost" and hasattr(value, "save_model")

    def dumps(self, value: object) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.ubj")
            value.save_model(path)  # type: ignore[attr-defined]
            with open(path, "rb") as f:
                return _envelope(value, f.read())

    def loads(self, data: bytes) -> object:
        cls, payload = _open(data, "xgboost")
        model = cls()
        model.load_model(bytearray(payload))
        return model


class LightGBMSerializer:
    """LightGBM boosters, as LightGBM's text model (scikit-learn wrappers go to joblib)."""

    name = "lightgbm"
    ext = "lgb"

    def handles(self, value: object) -> bool:
        return full_type_name(value) == "lightgbm.basic.Booster"

    def dumps(self, value: object) -> bytes:
        text: str = value.model_to_string()  # type: ignore[attr-defined]
        return _envelope(value, text.encode())

    def loads(self, data: bytes) -> object:
        cls, payload = _open(data, "lightgbm")
        return cls(model_str=payload.decode())


class SkopsSerializer:
    """scikit-learn models in skops' format (``pip install skops``): no pickle on load."""

    name = "skops"
    ext = "skops"

    def handles(self, value: object) -> bool:
        return top_package(value) == "sklearn"

    def dumps(self, value: object) -> bytes:
        import skops.io as sio

        return bytes(sio.dumps(value))

    def loads(self, data: bytes) -> object:
        import skops.io as sio

        # the bytes passed the store's digest check: phloem wrote them, so their types are
        # the ones the model had when it was registered
        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))


XGBOOST = XGBoostSerializer()
LIGHTGBM = LightGBMSerializer()
SKOPS = SkopsSerializer()


class RawSerializer:
    """Bytes as they are: a part of a larger value (a chunk of a model's arrays)."""

    name = "raw"
    ext = "bin"

    def handles(self, value: object) -> bool:
        return isinstance(value, (bytes, bytearray, memoryview))

    def dumps(self, value: object) -> bytes:
        return bytes(value)  # type: ignore[call-overload,no-any-return]

    def loads(self, data: bytes) -> object:
        return data


class PartsManifestSerializer:
    """The manifest of a value stored in parts (``phloem.models.parts``): JSON."""

    name = "model-parts"
    ext = "json"

    def handles(self, value: object) -> bool:
        return False

    def dumps(self, value: object) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> object:
        return json.loads(data)


RAW = RawSerializer()
PARTS = PartsManifestSerializer()
