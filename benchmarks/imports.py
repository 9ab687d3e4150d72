"""How long ``import phloem`` and ``phloem --help`` take in a fresh interpreter.

    python benchmarks/imports.py [--repeat N] [--top K]

Prints the median and the best of N fresh runs of each (in its own process, timed inside it so
interpreter start is not counted) against its target, then the K slowest modules of one
``import phloem`` by ``python -X importtime``. It asserts nothing: tests/test_dsl.py::
test_import_is_light and tests/test_cli.py::test_help_does_not_load_the_store check *what* is
loaded; this measures how long it takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what is timed, and its target in seconds
TIMED = {
    # DESIGN: "import phloem stays light (well under 200 ms)"
    "import phloem": ("import phloem", 0.2),
    # the CLI imports typer and its commands, never the store
    "phloem --help": (
        "from phloem.cli.main import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass",
        0.5,
    ),
}


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src}


def seconds(code: str, repeat: int) -> list[float]:
    """``code`` timed in ``repeat`` fresh interpreters (its own output is discarded)."""
    timed = (
        "import io, sys, time\nt = time.perf_counter()\nout, sys.stdout = sys.stdout, io.StringIO()"
        f"\n{code}\nsys.stdout = out\nprint(time.perf_counter() - t)"
    )
    out = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", timed], capture_output=True, text=True, check=True, env=_env()
        )
        out.append(float(done.stdout.split()[-1]))
    return out


def slowest_modules(top: int) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the ``top`` slowest imports under ``import phloem``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import phloem"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line.split(":", 1)[1].split("|")
        rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9, help="fresh imports to time (default 9)")
    ap.add_argument("--top", type=int, default=8, help="slowest modules to list (default 8)")
    args = ap.parse_args(argv)
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    for name, (code, target) in TIMED.items():
        times = seconds(code, args.repeat)
        median = statistics.median(times)
        verdict = "PASS" if median <= target else "MISS"
        print(
            f"{name}: median {median * 1000:.1f} ms, best {min(times) * 1000:.1f} ms over "
            f"{len(times)} fresh interpreters (target <= {target * 1000:.0f} ms: {verdict})"
        )
    print("slowest modules of one import (cumulative ms):")
    for us, name in slowest_modules(args.top):
        print(f"  {us / 1000:8.1f}  {name}")
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
