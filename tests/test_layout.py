"""The house plan, checked from the code itself: one table of roles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ["alliance", "tenants", "referrals", "reporting", "consultations"]
ROLE_TABLE = ROOT / "tenants" / "roles.py"


def product_modules() -> list[Path]:
    return [
        path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    ]


def _role_members(node: ast.AST) -> int:
    """How many `Role.X` an expression lists directly (a set, tuple, list or frozenset)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "frozenset" and node.args:
        return _role_members(node.args[0])
    if isinstance(node, ast.Set | ast.Tuple | ast.List):
        return sum(
            1
            for element in node.elts
            if isinstance(element, ast.Attribute)
            and isinstance(element.value, ast.Name)
            and element.value.id == "Role"
        )
    return 0


def test_role_lists_are_defined_in_the_role_table_only():
    found = []
    for path in product_modules():
        if path == ROLE_TABLE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if _role_members(node) >= 2:
                found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    assert not found, "role lists outside tenants/roles.py: " + ", ".join(found)


def test_the_check_sees_a_role_list():
    # The scan would find what it forbids (a check that cannot fail proves nothing).
    tree = ast.parse(
        "X = frozenset({Role.RADIOLOGIST, Role.SENIOR_RADIOLOGIST})\nY = (Role.A, Role.B)"
    )
    lines = {n.lineno for n in ast.walk(tree) if _role_members(n) >= 2}
    assert lines == {1, 2}


def _imported_modules(path: Path) -> set[str]:
    """Every module an file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_foundation_imports_nothing_above_it():
    above = ("alliance", "referrals", "reporting", "consultations", "bench")
    found = sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "tenants").rglob("*.py")
        if "migrations" not in path.parts
        for module in _imported_modules(path)
        if module.split(".")[0] in above
    )
    assert not found, "\n".join(found)


def test_every_tenant_owned_model_has_an_access_rule():
    """Fail closed stays a choice: a model of the hub either has a rule, or is one of those
    no caller queries through the access layer."""
    from django.apps import apps

    from tenants.access import access_rules

    unscoped = {
        "tenants.user",
        "alliance.refreshstate",
        "reporting.sharelink",
        "reporting.sharelinkopening",
    }
    rules = access_rules()
    missing = sorted(
        model._meta.label_lower
        for model in apps.get_models()
        if model._meta.app_label in APPS
        and model._meta.label_lower not in rules
        and model._meta.label_lower not in unscoped
    )
    assert not missing
    assert not unscoped & set(rules)


# --- Tenant-owned rows are read through the access layer (Zulip's lint) --------------------

INTERFACE_MODULES = ("views.py", "api.py", "consumers.py")


def _interface_modules() -> list[Path]:
    return [
        path
        for path in product_modules()
        if path.name.endswith(INTERFACE_MODULES) or "templatetags" in path.parts
    ]


def _unscoped_queries(source: str, models: set[str]) -> list[int]:
    """Lines where a view, API module, consumer or template tag queries a tenant-owned model
    by hand. Allowed: a scoped viewset's `queryset` (its base class scopes it) and a queryset
    handed to the access layer (`visible`, `get_visible_or_404`)."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "queryset" for t in statement.targets
                ):
                    allowed |= {id(n) for n in ast.walk(statement.value)}
        elif isinstance(node, ast.Call):
            name = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if name in {"visible", "get_visible_or_404"}:
                allowed |= {id(n) for arg in node.args for n in ast.walk(arg)}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "objects"
        and isinstance(node.value, ast.Name)
        and node.value.id in models
        and id(node) not in allowed
    ]


def _tenant_owned_models() -> set[str]:
    from django.apps import apps

    from tenants.access import access_rules

    return {apps.get_model(label).__name__ for label in access_rules()}


def test_interfaces_read_tenant_owned_rows_through_the_access_layer():
    models = _tenant_owned_models()
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _interface_modules()
        for line in _unscoped_queries(path.read_text(), models)
    ]
    assert not found, "query these through tenants.access: " + ", ".join(found)


def test_the_lint_finds_a_query_by_hand():
    source = (
        "class V(ScopedGenericViewSet):\n"
        "    queryset = Study.objects.all()\n"
        "def view(request, pk):\n"
        "    access.get_visible_or_404(scope, Study.objects.all(), pk=pk)\n"
        "    return Study.objects.get(pk=pk)\n"
    )
    assert _unscoped_queries(source, {"Study"}) == [5]


# --- The layers: tenants < the alliance domain < referrals < reporting < consultations; the
# commission analytics and the project wiring on top. -------------------------------------

LAYERS = ["tenants", "alliance", "referrals", "reporting", "consultations"]
# Modules of the alliance package that are not the alliance domain: the project's wiring
# (it joins every app) and the commission analytics (it reads every app's rows).
ABOVE_THE_APPS = (
    "alliance/settings.py",
    "alliance/urls.py",
    "alliance/views.py",  # the home page joins the apps (the clinic's sections)
    "alliance/asgi.py",
    "alliance/wsgi.py",
    "alliance/celery.py",
    "alliance/ws_routes.py",
    "alliance/lifespan.py",
    "alliance/demo.py",
    "alliance/management/",
    "alliance/analytics/",
)


def test_no_app_imports_one_above_it():
    found = []
    for path in product_modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(ABOVE_THE_APPS):
            continue
        own = LAYERS.index(relative.split("/")[0])
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > own:
                found.append(f"{relative} imports {module}")
    assert not found, "\n".join(sorted(found))
