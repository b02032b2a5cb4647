"""Layers point inward: no bot imports a sibling bot, the core imports no bot, nothing imports the front ends."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rejoinder"
BOTS = SRC / "bots"
FRONT_ENDS = ("rejoinder.cli", "rejoinder.repl", "rejoinder.terminal", "rejoinder.server")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}"))
    return found


def is_module(name: str) -> bool:
    """Whether ``rejoinder.x.y`` is a module or package of ours (and not a name defined in one)."""
    if not name.startswith("rejoinder."):
        return False
    path = SRC.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def bot_of(module: str) -> str | None:
    """``eliza`` for ``rejoinder.bots.eliza.engine``; None for the registry (``rejoinder.bots`` itself)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["rejoinder", "bots"] else None


def bot_packages() -> list[Path]:
    modules = [p for p in BOTS.iterdir() if p.suffix == ".py" and p.name != "__init__.py"]
    packages = [p for p in BOTS.iterdir() if (p / "__init__.py").exists()]
    return sorted(modules + packages)


@pytest.mark.parametrize("package", bot_packages(), ids=lambda p: p.stem)
def test_no_bot_imports_a_sibling_bot_or_a_front_end(package: Path):
    own = package.stem
    files = [package] if package.is_file() else sorted(package.rglob("*.py"))
    problems = []
    for path in files:
        for module in imported_modules(path):
            other = bot_of(module)
            if other is not None and other != own:
                problems.append(f"{path.relative_to(SRC)} imports {module}")
            if module.startswith(FRONT_ENDS):
                problems.append(f"{path.relative_to(SRC)} imports the front end {module}")
    assert not problems, "\n".join(problems)


def test_the_core_and_shared_modules_import_no_bot():
    bots = BOTS.resolve()
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if path.resolve().is_relative_to(bots) or path.name in ("cli.py", "repl.py", "terminal.py", "__main__.py"):
            continue
        if path.resolve().is_relative_to((SRC / "server").resolve()):
            continue
        for module in imported_modules(path):
            if bot_of(module) is not None:
                problems.append(f"{path.relative_to(SRC)} imports {module}")
            if module.startswith(FRONT_ENDS):
                problems.append(f"{path.relative_to(SRC)} imports the front end {module}")
    assert not problems, "\n".join(problems)


def test_the_cli_starts_without_the_optional_training_and_model_packages():
    """The base install has no torch, transformers, trl or peft: ``rejoinder chat --bot eliza`` must
    still start, so the training commands may import them only when they run."""
    import subprocess
    import sys

    blocked = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import rejoinder.cli\n"
        "from rejoinder.cli import app\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
