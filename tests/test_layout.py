"""The package's layout: bots depend on the core and the shared modules, never on a sibling bot."""

from __future__ import annotations

import ast
from pathlib import Path

import rejoinder.bots

BOTS = Path(rejoinder.bots.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_bot_imports_a_sibling_bot():
    bots = {
        p.stem if p.is_file() else p.name for p in BOTS.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    bots.discard("__init__")
    found = []
    for bot in sorted(bots):
        own = BOTS / bot if (BOTS / bot).is_dir() else BOTS / f"{bot}.py"
        for path in [own] if own.is_file() else sorted(own.rglob("*.py")):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[:2] == ["rejoinder", "bots"] and len(parts) > 2 and parts[2] in bots and parts[2] != bot:
                    found.append(f"{path.relative_to(BOTS.parent)} imports {name}")
    assert not found, "\n".join(found)
