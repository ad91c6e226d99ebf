"""Every billing domain module exports what it declares, documented, and imports nothing impure."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

import pytest

import perfmark.billing.domain as package

MODULES = sorted(
    path.stem for path in Path(package.__file__).parent.glob("*.py") if path.stem != "__init__"
)
ALLOWED_ROOTS = {"perfmark"} | set(sys.stdlib_module_names)
ALLOWED_PERFMARK = (
    "perfmark.money",
    "perfmark.errors",
    "perfmark.ids",
    "perfmark.clock",
    "perfmark.domain",
)


@pytest.mark.parametrize("name", MODULES)
def test_exports_exist_and_are_documented(name: str) -> None:
    module = importlib.import_module(f"perfmark.billing.domain.{name}")
    assert module.__doc__, name
    for export in module.__all__:
        value = getattr(module, export)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{export} has no docstring"


@pytest.mark.parametrize("name", MODULES)
def test_the_domain_imports_only_the_standard_library_and_pure_perfmark(name: str) -> None:
    source = (Path(package.__file__).parent / f"{name}.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module]
        else:
            continue
        for target in targets:
            assert target.split(".")[0] in ALLOWED_ROOTS, target
            if target.startswith("perfmark."):
                assert target.startswith(ALLOWED_PERFMARK), target
