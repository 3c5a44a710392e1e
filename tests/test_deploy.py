"""The production shape in deploy/ names only commands, variables and files that exist.

Nothing here starts a container (there is no Docker engine in CI): the compose file and the
Dockerfile are read as data and every name in them is checked against the code, and the
steps that can run outside a container are run here for real: settings loading on the
compose environment, the image's collectstatic, the database roles script, and the web
command answering its own healthcheck.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from django.core.management import get_commands, load_command_class
from django.urls import resolve
from psycopg import errors as pg_errors
from uvicorn.main import main as uvicorn_cli

from alliance import views

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
ENV_EXAMPLE = DEPLOY / ".env.example"
SETTINGS_FILE = REPO / "alliance" / "settings.py"
PYTHON = sys.executable

HUB_SERVICES = {"migrate", "web", "worker", "beat"}
BACKING_SERVICES = {"postgres", "redis", "minio", "minio-init"}


# --- Reading the files ------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    """Every variable alliance/settings.py reads: the first argument of each env.*() call."""
    names = set()
    for node in ast.walk(ast.parse(SETTINGS_FILE.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def production_required_names() -> set[str]:
    """The variables _refuse_unsafe_production judges: env.*("X") inside it, and the module
    globals it reads that were themselves loaded from a variable of the same name."""
    tree = ast.parse(SETTINGS_FILE.read_text())
    loaded_from_env = set()
    for node in tree.body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Call)
            and value.args
            and isinstance(value.args[0], ast.Constant)
            and value.args[0].value == target.id
        ):
            loaded_from_env.add(target.id)
    guard = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "_refuse_unsafe_production"
    )
    names = set()
    for node in ast.walk(guard):
        if isinstance(node, ast.Name) and node.id in loaded_from_env:
            names.add(node.id)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example line is not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def is_secret(name: str) -> bool:
    return bool(re.search(r"SECRET|PASSWORD", name))


def filled_env() -> dict[str, str]:
    """.env.example as an operator fills it in: every secret gets a fresh hex value."""
    return {
        name: secrets.token_hex(32) if is_secret(name) else value
        for name, value in env_example().items()
    }


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt} (and colon-less forms)."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"] or "", match["arg"] or ""
        present = name in variables and (variables[name] != "" or not op.startswith(":"))
        if op.endswith("-"):
            return variables[name] if present else arg
        if op.endswith("?"):
            if not present:
                raise KeyError(f"${{{name}}} is required: {arg}")
            return variables[name]
        if op.endswith("+"):
            return arg if present else ""
        return variables.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


def interpolated_names(text: str) -> set[str]:
    return {
        match["braced"] or match["plain"]
        for match in _INTERPOLATION.finditer(text)
        if not match["escaped"]
    }


def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose(variables: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as `docker compose config` would resolve it with deploy/.env."""
    return interpolate(compose_raw(), filled_env() if variables is None else variables)


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for token in shlex.split(arguments):
                name, sep, value = token.partition("=")
                assert sep, f"use ENV NAME=value, not the legacy form: {arguments!r}"
                values[name] = value
    return values


def build_step_env_and_scripts() -> list[tuple[dict[str, str], str]]:
    """Each `RUN env NAME=value ... sh -c 'script'` of the Dockerfile, split in its parts."""
    steps = []
    for keyword, arguments in dockerfile_instructions():
        tokens = shlex.split(arguments) if keyword == "RUN" else []
        if tokens[:1] == ["env"]:
            assignments = {}
            rest = tokens[1:]
            while rest and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", rest[0]):
                name, _, value = rest.pop(0).partition("=")
                assignments[name] = value
            assert rest[:2] == ["sh", "-c"], f"expected `sh -c '...'` after the env: {rest}"
            steps.append((assignments, rest[2]))
    return steps


# --- Checking that a command exists -------------------------------------------------------------


def check_hub_command(argv: list[str]) -> None:
    """Fail unless argv is a management command, a Celery command of the hub's app, or
    uvicorn serving an attribute that exists, with options its parser accepts."""
    program, *args = argv
    if program in {"python", "python3"} and args[:1] == ["manage.py"]:
        name, *options = args[1:]
        commands = get_commands()
        assert name in commands, f"`manage.py {name}` is not a management command"
        command = load_command_class(commands[name], name)
        command.create_parser("manage.py", name).parse_args(options)
    elif program == "celery":
        at = next(i for i, arg in enumerate(args) if arg in celery_cli.commands)
        subcommand, options = args[at], args[at + 1 :]
        group = celery_cli.make_context("celery", [*args[:at], subcommand])
        assert group.params["app"] == "alliance", f"celery -A names {group.params['app']!r}"
        app = find_app(group.params["app"])
        assert app.main == "alliance"
        group.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
        celery_cli.commands[subcommand].make_context(subcommand, options, parent=group)
    elif program == "uvicorn":
        parsed = uvicorn_cli.make_context("uvicorn", list(args))
        module_name, _, attribute = parsed.params["app"].partition(":")
        module = __import__(module_name, fromlist=[attribute])
        assert hasattr(module, attribute), f"{module_name} has no attribute {attribute!r}"
    else:
        pytest.fail(f"a hub service runs {argv!r}: not a command this test knows to check")


# --- The compose file ---------------------------------------------------------------------------


def test_the_production_shape_has_its_processes_and_backing_services():
    services = compose()["services"]
    assert set(services) == HUB_SERVICES | BACKING_SERVICES
    hub_built = {name for name, service in services.items() if "build" in service}
    assert hub_built == HUB_SERVICES
    images = {services[name]["image"] for name in HUB_SERVICES}
    assert len(images) == 1, f"the hub processes run different images: {images}"
    for name in HUB_SERVICES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / services["web"]["build"]["context"] / "deploy" / "Dockerfile").is_file()
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert services["redis"]["image"].split(":")[1].startswith("7")


@pytest.mark.parametrize("name", sorted(HUB_SERVICES))
def test_every_hub_service_runs_a_command_that_exists(name):
    check_hub_command(as_argv(compose()["services"][name]["command"]))


def test_the_processes_are_the_ones_the_product_names():
    services = compose()["services"]
    assert as_argv(services["migrate"]["command"])[:3] == ["python", "manage.py", "migrate"]
    assert as_argv(services["web"]["command"])[:2] == ["uvicorn", "alliance.asgi:application"]
    assert as_argv(services["worker"]["command"])[:4] == ["celery", "-A", "alliance", "worker"]
    assert as_argv(services["beat"]["command"])[:4] == ["celery", "-A", "alliance", "beat"]


def test_the_image_default_command_exists():
    commands = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "CMD"]
    assert len(commands) == 1
    check_hub_command(as_argv(json.loads(commands[0])))


def test_one_shot_services_gate_the_long_running_ones():
    services = compose()["services"]
    for name in ("migrate", "minio-init"):
        assert services[name]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["minio-init"]["depends_on"]["minio"] == {"condition": "service_healthy"}
    for name in ("web", "worker", "beat"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
        assert depends_on["minio-init"] == {"condition": "service_completed_successfully"}
        assert depends_on["redis"] == {"condition": "service_healthy"}
        assert services[name]["restart"] == "unless-stopped"


def test_backing_services_and_web_have_healthchecks():
    services = compose()["services"]
    for name in ("postgres", "redis", "minio", "web"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: healthcheck must run a command"
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert services["minio"]["healthcheck"]["test"][1:] == ["mc", "ready", "local"]


def test_the_web_healthcheck_asks_the_hubs_health_view():
    script = compose()["services"]["web"]["healthcheck"]["test"][-1]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", script)
    assert url, script
    port = url[1]
    assert f"--port={port}" in compose()["services"]["web"]["command"]
    assert resolve(url[2]).func is views.healthz
    compile(script, "<healthcheck>", "exec")  # it is Python


def test_hub_services_pass_only_variables_the_settings_read():
    known = settings_env_names()
    for name in HUB_SERVICES:
        passed = set(service_environment(compose()["services"][name]))
        assert passed - known == set(), f"{name} passes variables settings never read"


def test_hub_services_pass_every_variable_production_requires():
    required = production_required_names()
    # The guard is what we think it is (a rename in settings must show up here).
    assert required >= {
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "PATIENT_KEY_SECRET",
    }
    for name in HUB_SERVICES:
        environment = service_environment(compose()["services"][name])
        assert environment["HUB_ENV"] == "production"
        assert environment["DEBUG"] == "false"
        assert required - set(environment) == set(), f"{name} misses variables"


@pytest.mark.parametrize("name", ["migrate", "web"])
def test_the_compose_environment_passes_the_production_checks(name, tmp_path):
    """The environment compose hands a hub process, filled in as .env.example says, makes
    `manage.py check --deploy` pass with no warning (the hosts need not resolve for it)."""
    environment = service_environment(compose()["services"][name])
    environment |= {
        "PATH": os.environ["PATH"],
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    result = subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_unfilled_example_cannot_start_anything():
    """Every secret in .env.example is empty, and compose refuses an empty one (:?)."""
    text = COMPOSE_FILE.read_text()
    example = env_example()
    secret_names = {name for name in example if is_secret(name)}
    assert {
        "SECRET_KEY",
        "PATIENT_KEY_SECRET",
        "S3_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "HUB_DB_APP_PASSWORD",
        "REDIS_PASSWORD",
        "MINIO_ROOT_PASSWORD",
    } <= secret_names
    for name in secret_names:
        assert example[name] == "", f".env.example must not carry a value for {name}"
        assert f"${{{name}:?" in text, f"compose must refuse an empty {name}"
    with pytest.raises(KeyError, match="is required"):
        compose(env_example())


def test_env_example_lists_exactly_the_interpolated_variables():
    used = interpolated_names(COMPOSE_FILE.read_text())
    listed = set(env_example())
    assert used - listed == set(), "interpolated in docker-compose.yml, missing in .env.example"
    assert listed - used == set(), "listed in .env.example, used nowhere in docker-compose.yml"


def test_files_mounted_into_services_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name} mounts missing {source}"
    assert compose()["services"]["minio-init"]["entrypoint"][-1] == "/minio-init.sh"


def test_operations_doc_names_every_variable_and_only_real_commands():
    text = (REPO / "docs" / "operations.md").read_text()
    undocumented = {
        name for name in settings_env_names() | set(env_example()) if f"`{name}`" not in text
    }
    assert undocumented == set(), "add these to docs/operations.md"
    named = set(re.findall(r"manage\.py (\w+)", text))
    assert "audit_verify" in named
    # run_gateway is documented as planned: it arrives with a later issue.
    assert named - set(get_commands()) <= {"run_gateway"}


# --- The Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_builds_from_python_slim_and_runs_as_a_user():
    instructions = dockerfile_instructions()
    images = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert images[-1] == "python:3.11-slim", "the image the hub runs in"
    for image in images:
        assert image == "python:3.11-slim" or re.fullmatch(r"node:\d+-slim", image), image
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}


def test_dockerfile_copies_only_files_that_exist_and_are_sent():
    ignore_lines = DOCKERIGNORE.read_text().splitlines()
    assert "*" in ignore_lines, "the .dockerignore sends nothing but what it names"
    allowed = {line[1:].strip("/") for line in ignore_lines if line.startswith("!")}
    copied = []
    for keyword, arguments in dockerfile_instructions():
        if keyword in {"COPY", "ADD"} and "--from=" not in arguments:
            tokens = [token for token in shlex.split(arguments) if not token.startswith("--")]
            copied.extend(tokens[:-1])
    assert "manage.py" in copied
    assert "pyproject.toml" in copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert source.split("/")[0] in allowed, f"COPY {source}: excluded by the .dockerignore"


def test_dockerfile_puts_the_npm_packages_where_settings_look_for_them():
    frontend_dir = dockerfile_env()["HUB_FRONTEND_DIR"]
    copies = [
        arguments
        for keyword, arguments in dockerfile_instructions()
        if keyword == "COPY" and arguments.startswith("--from=frontend ")
    ]
    assert copies == [f"--from=frontend /frontend/node_modules {frontend_dir}/node_modules"]
    runs = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    assert any(run.startswith("npm ci ") for run in runs), "from the lock file, not npm install"


def test_dockerfile_installs_the_project_from_pyproject_and_nothing_else():
    runs = " ".join(
        arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"
    )
    assert "pip wheel --wheel-dir /wheels ." in runs
    assert "pip install --no-index --find-links=/wheels alliance-imaging-hub" in runs


def test_dockerfile_env_names_are_settings_or_python_variables():
    known = settings_env_names()
    for name in dockerfile_env():
        assert name in known or name.startswith(("PYTHON", "PIP_")), name
    # The build step's placeholders must not become the image's environment.
    assert not {"SECRET_KEY", "PATIENT_KEY_SECRET", "DATABASE_URL"} & set(dockerfile_env())


def test_dockerfile_build_step_runs_real_commands_in_production_mode(tmp_path):
    """The image's translation and static step, run here: the placeholder environment passes
    the production guard and whitenoise's manifest storage writes its manifest."""
    steps = build_step_env_and_scripts()
    assert len(steps) == 1
    build_env, script = steps[0]
    assert build_env["HUB_ENV"] == "production"
    commands = [shlex.split(part) for part in script.split("&&")]
    assert [argv[:3] for argv in commands] == [
        ["python", "manage.py", "compile_translations"],
        ["python", "manage.py", "collectstatic"],
    ]
    for argv in commands:
        check_hub_command(argv)
    environment = {
        **build_env,
        "PATH": os.environ["PATH"],
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    collect = ["collectstatic", *commands[1][3:]]
    result = subprocess.run(
        [PYTHON, "manage.py", *collect],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").is_file()
    assert not (tmp_path / "data").exists(), "production settings wrote into the data folder"


# --- Running parts of the shape against the local services ---------------------------------------


def _superuser_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.fail("run with DATABASE_URL pointing at a PostgreSQL superuser (make test)")
    return url


def _with_database(
    url: str, database: str, user: str | None = None, password: str | None = None
) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:{password}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


@pytest.fixture
def scratch_roles() -> Iterator[dict[str, str]]:
    """A fresh database plus uniquely named copies of the two roles, dropped afterwards."""
    suffix = secrets.token_hex(4)
    names = {
        "database": f"hub_deploy_roles_{suffix}",
        "owner": f"hub_owner_{suffix}",
        "app": f"hub_app_{suffix}",
        "owner_password": secrets.token_hex(16),
        "app_password": secrets.token_hex(16),
    }
    admin = _with_database(_superuser_url(), "postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{names["database"]}"')
    try:
        yield names
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{names["database"]}" WITH (FORCE)')
            for role in (names["owner"], names["app"]):
                connection.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.integration
def test_database_roles_keep_the_app_from_truncating_the_audit_trail(scratch_roles, tmp_path):
    """postgres-roles.sh, then migrate as the owner: the app role (the one web, worker and
    beat use) writes rows, but cannot TRUNCATE the audit table or drop its trigger."""
    names = scratch_roles
    script = (DEPLOY / "postgres-roles.sh").read_text()
    assert script.count("hub_owner") >= 2
    assert script.count("hub_app") >= 2
    # The same script, with role names no other run on this server can hold.
    script = script.replace("hub_owner", names["owner"]).replace("hub_app", names["app"])
    (tmp_path / "roles.sh").write_text(script)
    superuser = urllib.parse.urlsplit(_superuser_url())
    result = subprocess.run(
        ["bash", str(tmp_path / "roles.sh")],
        env={
            "PATH": os.environ["PATH"],
            "PGHOST": superuser.hostname or "127.0.0.1",
            "PGPORT": str(superuser.port or 5432),
            "PGPASSWORD": urllib.parse.unquote(superuser.password or ""),
            "POSTGRES_USER": urllib.parse.unquote(superuser.username or "postgres"),
            "POSTGRES_DB": names["database"],
            "HUB_DB_OWNER_PASSWORD": names["owner_password"],
            "HUB_DB_APP_PASSWORD": names["app_password"],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    base = _superuser_url()
    owner_url = _with_database(base, names["database"], names["owner"], names["owner_password"])
    app_url = _with_database(base, names["database"], names["app"], names["app_password"])
    migrate = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": owner_url, "HUB_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr

    with psycopg.connect(app_url, autocommit=True) as connection:
        connection.execute("SELECT count(*) FROM tenants_auditevent")
        connection.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date) "
            "VALUES ('deploy-test', '', now())"
        )
        with pytest.raises(pg_errors.InsufficientPrivilege):
            connection.execute("TRUNCATE tenants_auditevent")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            connection.execute("DROP TRIGGER tenants_auditevent_append_only ON tenants_auditevent")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            connection.execute("CREATE TABLE deploy_test (id int)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_web_serves_its_healthcheck_in_production_mode(tmp_path):
    """The web service's own command and environment (pointed at this machine's PostgreSQL
    and Redis), answering the compose healthcheck exactly as written."""
    redis_url = os.environ.get("REDIS_URL") or pytest.fail("run with REDIS_URL (make test)")
    web = compose()["services"]["web"]
    port = _free_port()
    environment = service_environment(web) | {
        "PATH": os.environ["PATH"],
        # Loopback only, even if a redirect were followed.
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": _with_database(_superuser_url(), "postgres"),
        "REDIS_URL": redis_url,
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    argv = [arg for arg in as_argv(web["command"]) if not arg.startswith("--workers")]
    argv = [
        arg.replace("--port=8000", f"--port={port}").replace("--host=0.0.0.0", "--host=127.0.0.1")
        for arg in argv
    ]
    assert f"--port={port}" in argv
    assert "--host=127.0.0.1" in argv
    server = subprocess.Popen(
        [PYTHON, "-m", *argv],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        script = web["healthcheck"]["test"][-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            check = subprocess.run(
                [PYTHON, "-c", script], env=environment, capture_output=True, text=True, timeout=30
            )
            if check.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.3)
        # Asked without the proxy's https header, the hub redirects instead: the healthcheck
        # passes because it reached /healthz, not by accident.
        plain_status = None
        if check.returncode == 0:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
            plain_status = connection.getresponse().status
            connection.close()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert check.returncode == 0, f"{check.stderr}\n--- uvicorn:\n{output}"
    assert plain_status == 301
    assert "Traceback" not in output, output
