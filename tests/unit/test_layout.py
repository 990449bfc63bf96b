"""Dependencies point one way; entry points are leaves; the folders are subpackages."""

import ast
from pathlib import Path

import pytest

import lorastack

ROOT = Path(__file__).resolve().parents[2]

# folder -> module prefixes its code must never import
FORBIDDEN = {
    "lorastack": ("lorastack.serve", "lorastack.train", "lorastack.guardrails", "lorastack.ui"),
    "guardrails": (
        "lorastack.serve",
        "lorastack.train",
        "lorastack.ui",
        "lorastack.cli",
        "fastapi",
        "starlette",
        "vllm",
        "gradio",
    ),
    "serve": ("lorastack.train", "lorastack.ui", "lorastack.cli", "gradio"),
    "train": ("lorastack.serve", "lorastack.ui", "lorastack.cli", "fastapi", "gradio"),
    "ui": ("lorastack.serve", "lorastack.train", "lorastack.guardrails", "lorastack.cli", "vllm"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(folder: str) -> list[Path]:
    # Entry points (the CLI, `python -m lorastack`) are the leaves allowed to import everything.
    files = sorted((ROOT / folder).rglob("*.py"))
    return [
        f
        for f in files
        if "cli" not in f.relative_to(ROOT / folder).parts and f.name != "__main__.py"
    ]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_dependencies_point_one_way(folder: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources(folder)
        for name in _imports(path)
        if name.startswith(FORBIDDEN[folder])
    ]
    assert bad == []


def test_nothing_imports_the_command_line() -> None:
    library = [p for folder in FORBIDDEN for p in _sources(folder)]
    assert library
    bad = [p for p in library if any(n.startswith("lorastack.cli") for n in _imports(p))]
    assert bad == []


@pytest.mark.parametrize("folder", ["serve", "train", "guardrails", "ui"])
def test_top_level_folders_are_lorastack_subpackages(folder: str) -> None:
    module = __import__(f"lorastack.{folder}", fromlist=["_"])
    assert Path(module.__file__).resolve().parent == ROOT / folder
    assert Path(lorastack.__file__).resolve().parent == ROOT / "lorastack"


def test_every_package_folder_is_in_the_distribution() -> None:
    """A folder left out of `packages` works in the editable install and is missing from a
    built wheel (the Docker images install one)."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: ROOT / path for name, path in tool["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == set(tool["packages"])


def _calls(path: Path) -> set[str]:
    """Dotted names of everything `path` calls (`subprocess.Popen`, `PresidioDetector`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            names.add(ast.unparse(node.func))
    return names


def _library() -> list[Path]:
    return [p for folder in FORBIDDEN for p in _sources(folder)]


def test_child_processes_are_started_in_one_place() -> None:
    """Long-running children (engine, gateway, UI) start, wait and stop through ChildProcess."""
    bad = [
        str(p.relative_to(ROOT))
        for p in _library()
        if "subprocess.Popen" in _calls(p) and p != ROOT / "lorastack" / "processes.py"
    ]
    assert bad == []


def test_only_entry_points_build_a_pii_detector_or_change_process_wide_state() -> None:
    """Library code takes a detector; entry points own the one detector and the process."""
    owned = ("PresidioDetector", "gc.freeze", "freeze_loaded_objects", "limit_numpy_blas_threads")
    runtime = ROOT / "guardrails" / "runtime.py"
    bad = [
        f"{p.relative_to(ROOT)} calls {name}"
        for p in _library()
        if p != runtime
        for name in _calls(p)
        if name.endswith(owned)
    ]
    assert bad == []


def test_the_gateway_talks_http_to_engines_through_upstream_only() -> None:
    allowed = {ROOT / "serve" / "upstream.py", ROOT / "serve" / "app.py"}
    bad = [
        str(p.relative_to(ROOT))
        for p in _sources("serve")
        if "httpx" in _imports(p) and p not in allowed
    ]
    assert bad == []


def test_errors_become_http_in_serve_errors_only() -> None:
    """Typed exceptions everywhere; `serve/errors.py` alone builds error responses."""
    bad = [
        str(p.relative_to(ROOT))
        for p in _sources("serve")
        if p.name != "errors.py" and "error_body" in _calls(p)
    ]
    assert bad == []


def test_the_ui_keeps_gradio_in_its_tabs_and_app() -> None:
    """The client, transcript and catalogue are plain Python, unit-tested without Gradio."""
    allowed = {ROOT / "ui" / "app.py", *(ROOT / "ui" / "tabs").glob("*.py")}
    bad = [
        str(p.relative_to(ROOT))
        for p in _sources("ui")
        if p not in allowed and any(n.startswith("gradio") for n in _imports(p))
    ]
    assert bad == []


def test_train_data_modules_build_on_records_and_only_the_pipeline_joins_them() -> None:
    folder = ROOT / "train" / "data"
    joiners = {"__init__.py", "prepare.py", "write.py"}
    bad = [
        f"{p.name} imports {name}"
        for p in folder.glob("*.py")
        if p.name not in joiners
        for name in _imports(p)
        if name.startswith("lorastack.train.data.") and name != "lorastack.train.data.records"
    ]
    assert bad == []
