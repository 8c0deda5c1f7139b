"""The CLI sits on top: nothing below it (the package, tuning/, apps/, benchmarks/) imports
``emotion_keras.commands``; the work lives in ``emotion_keras.pipelines`` and the layers under it.
``emotion_keras/cli.py`` (and ``__main__``) is the CLI's own entry point and may."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_ENTRY = {ROOT / "emotion_keras" / "cli.py", ROOT / "emotion_keras" / "__main__.py"}


def _imported_modules(source: str, package: str, filename: str = "<string>") -> set[str]:
    """Every module an ``import``/``from ... import`` in ``source`` names (relative ones resolved
    against ``package``), including imports inside functions."""
    tree = ast.parse(source, filename)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # from emotion_keras import commands
    return found


def _library_files() -> list[Path]:
    files = [p for d in ("emotion_keras", "tuning", "apps", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    commands = ROOT / "emotion_keras" / "commands"
    return [p for p in files if commands not in p.parents and p not in CLI_ENTRY]


def _uses_commands(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == "emotion_keras.commands" or m.startswith("emotion_keras.commands."))


def test_nothing_below_the_cli_imports_commands():
    files = _library_files()
    assert len(files) > 50  # the walk found the package, tuning, apps and benchmarks
    offenders = {}
    for p in files:
        package = ".".join(p.relative_to(ROOT).parts[:-1])
        used = _uses_commands(_imported_modules(p.read_text(), package, str(p)))
        if used:
            offenders[str(p.relative_to(ROOT))] = used
    assert offenders == {}, f"import emotion_keras.pipelines (or lower) instead of the CLI: {offenders}"


def test_the_check_sees_every_kind_of_import():
    # The checker itself: absolute, from-, nested-in-function and relative imports are all caught.
    cases = {"import emotion_keras.commands.face": True,
             "from emotion_keras import commands": True,
             "def f():\n    from emotion_keras.commands.common import json_arg": True,
             "from ..commands import speech": True,
             "from emotion_keras.pipelines import face": False,
             "import emotion_keras.commandsx": False}
    for source, bad in cases.items():
        assert bool(_uses_commands(_imported_modules(source, "emotion_keras.pipelines"))) is bad, source
