"""bench/ stays out of the product: no product module imports it, the package and the image
leave it out, its dependencies are an extra, and settings install it only where it exists."""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

from django.conf import settings
from django.core.management import get_commands

REPO = Path(__file__).resolve().parent.parent
PRODUCT_APPS = ["alliance", "tenants", "referrals", "reporting", "consultations"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_product_module_imports_bench():
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for app in PRODUCT_APPS
        for path in sorted((REPO / app).rglob("*.py"))
        for name in imported_modules(path)
        if name == "bench" or name.startswith("bench.")
    ]
    assert offenders == []


def test_the_package_and_the_image_leave_bench_out():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(
        fnmatch.fnmatch(name, pattern) for name in ("bench", "bench.archive") for pattern in include
    )
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert not re.search(r"^COPY\s+(\S+\s+)*bench\b", dockerfile, re.MULTILINE)
    assert "!bench" not in (REPO / "deploy" / "Dockerfile.dockerignore").read_text()


def test_bench_dependencies_are_an_extra_the_dev_tools_include():
    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=;, ]", r, maxsplit=1)[0].lower() for r in requirements}

    extras = PYPROJECT["project"]["optional-dependencies"]
    product = names(PYPROJECT["project"]["dependencies"])
    assert {"psutil", "websockets", "py-spy"} <= names(extras["bench"])
    assert names(extras["bench"]) & product == set()
    assert "alliance-imaging-hub[bench]" in extras["dev"]


def test_the_bench_commands_come_from_the_bench_app_when_it_is_present():
    assert "bench" in settings.INSTALLED_APPS  # the suite runs from the repository root
    commands = get_commands()
    for name in ("bench_stow", "bench_qido", "bench_worklist", "bench_mdt", "seed_scale"):
        assert commands[name] == "bench", name
