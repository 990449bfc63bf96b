"""Run mypy over the source folders under their installed module names.

The distribution maps top-level folders to subpackages (`serve/` is
`lorastack.serve`). mypy cannot follow setuptools' editable-install hook, so
this script hands it each file with the module name the mapping gives it.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> list[BuildSource]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    sources = []
    for package, folder in package_dir.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            sources.append(BuildSource(str(path), ".".join((package, *parts))))
    return sources


def main() -> int:
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), "-c", "pass"])
    try:
        sources = _sources()
        result = build.build(sources, options)
    except CompileError as error:
        print("\n".join(error.messages))
        return 2
    for line in result.errors:
        print(line)
    if result.errors:
        print(f"mypy: {len(result.errors)} problem(s)")
        return 1
    print(f"mypy: no issues in {len(sources)} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
