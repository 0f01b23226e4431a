"""Merge benchmark figures into bench-results.json at the repository root (SPEC §15:
`{"name": {"value", "unit", "ceiling"?, "ratio"?}}`), keeping every figure another benchmark wrote.

    python -m tests.benchmarks.merge FILE [--prefix PREFIX]

Each name of FILE is written as PREFIX + name, replacing only a figure of that name.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results.json"


def figure(value: float | None, unit: str, *, ceiling: float | None = None) -> dict[str, Any]:
    """One figure; with a ceiling, also the value's ratio to it (above 1: over the ceiling)."""
    data: dict[str, Any] = {"value": value, "unit": unit}
    if ceiling is not None:
        data["ceiling"] = ceiling
        if value is not None:
            data["ratio"] = round(value / ceiling, 4)
    return data


def merge(figures: dict[str, dict[str, Any]], *, prefix: str = "", path: Path = RESULTS) -> dict[str, Any]:
    """Write `figures` (names prefixed) into the file at `path`; returns everything it now holds."""
    for name, data in figures.items():
        if not isinstance(data, dict) or "value" not in data or "unit" not in data:
            raise ValueError(f"{name}: a figure is an object with a value and a unit, not {data!r}.")
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update({prefix + name: data for name, data in figures.items()})
    # Written aside and moved into place: a benchmark stopped halfway leaves the old file whole.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".bench-results-")
    with os.fdopen(handle, "w") as out:
        json.dump(dict(sorted(merged.items())), out, indent=2)
        out.write("\n")
    os.replace(temporary, path)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description="Merge benchmark figures into bench-results.json.")
    parser.add_argument("file", type=Path, help="A JSON file of figures, e.g. from manage.py whatif --json.")
    parser.add_argument("--prefix", default="", help="Put before each name, e.g. 'demo.'.")
    arguments = parser.parse_args()
    figures = json.loads(arguments.file.read_text())
    merge(figures, prefix=arguments.prefix)
    print(f"{len(figures)} figures merged into {RESULTS.name}.")


if __name__ == "__main__":
    main()
