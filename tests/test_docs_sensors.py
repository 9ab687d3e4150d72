"""The README's table of built-in sensors names every argument of each and their real
defaults, and its example sets the waiting per use as it says."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import phloem.sensors
from phloem.dsl.task import Task

README = Path(__file__).resolve().parent.parent / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("<!-- sensors -->") : text.index("<!-- /sensors -->")]


def human(seconds: float) -> str:
    if seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" + ("s" if days != 1 else "")
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0 and seconds >= 600:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def test_every_builtin_sensor_has_a_row_with_its_arguments_and_defaults() -> None:
    section = _section()
    names = phloem.sensors.__all__
    assert names, "phloem.sensors exports no sensors"
    for name in names:
        sensor = getattr(phloem.sensors, name)
        assert isinstance(sensor, Task) and sensor.options.sensor is not None
        rows = [ln for ln in section.splitlines() if ln.startswith(f"| `{name}(")]
        assert len(rows) == 1, f"README has no row for sensor {name}"
        row = rows[0]
        signature = re.match(rf"\| `{name}\((.*?)\)`", row)
        assert signature is not None
        documented = signature.group(1)
        for param in inspect.signature(sensor.fn).parameters.values():
            assert re.search(rf"\b{param.name}\b", documented), f"{name}: {param.name}"
            if param.default is not inspect.Parameter.empty:
                assert f"{param.name}={param.default!r}" in documented, f"{name}: {param.name}"
        options = sensor.options.sensor
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[-2:] == [human(options.poke_interval), human(options.timeout)], name


def test_the_readme_example_sets_options_per_use() -> None:
    text = README.read_text()
    start = text.index("```python", text.index("<!-- /sensors -->"))
    code = text[start + len("```python") : text.index("```", start + 3)]
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    spec = namespace["daily_report"].spec  # type: ignore[attr-defined]
    waits = spec.tasks["wait_for_file"].options.sensor
    assert (waits.poke_interval, waits.timeout, waits.mode.value) == (300, 6 * 3600, "reschedule")
    other = spec.tasks["wait_for_pipeline"].options
    assert other.sensor.timeout == 2 * 3600 and other.sensor.soft_fail
    assert dict(spec.tasks["wait_for_pipeline"].kwargs)["task"].value == "publish"
