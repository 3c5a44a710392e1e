"""`make run` for real: deploy/local/run-embedded.sh with no database or Redis server named.

The script runs in a session of its own with an empty data folder and free ports, as
someone trying the hub would: it starts the embedded PostgreSQL and Valkey from their
wheels (alliance/embedded.py), and honcho starts uvicorn, a Celery worker and beat on them,
the production code paths (Redis broker, channels_redis layers, PostgreSQL). No
pytest-django database is involved; the tests talk to the stack over HTTP and WebSocket
only. The tests share one stack, in file order; the last one stops it with Ctrl-C.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from websockets.exceptions import ConnectionClosed

from alliance.demo import DEMO_PASSWORD

from .processes import (
    ROOT,
    VENV_BIN,
    Proc,
    base_env,
    free_port,
    http,
    open_socket,
    processes_with_env,
    start,
    wait_for_http,
    wait_until,
)

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    script: Proc
    base: str
    data_dir: Path
    server_ports: tuple[int, int]  # PostgreSQL, Valkey

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws/notifications/"

    @property
    def ws_referrals(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws/referrals/"

    def health(self) -> dict:
        return http().get(f"{self.base}/healthz", timeout=5).json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("embedded")
    port, pg_port, redis_port = free_ports(3)
    env = base_env(
        HUB_DATA_DIR=str(data_dir),
        HUB_PORT=str(port),
        HUB_PG_PORT=str(pg_port),
        HUB_REDIS_PORT=str(redis_port),
        HUB_HEARTBEAT_SECONDS="1",
        HUB_ANALYTICS_REFRESH_SECONDS="5",
    )
    script = start(
        "run-embedded", [ROOT / "deploy" / "local" / "run-embedded.sh"], env=env, log_dir=data_dir
    )
    try:
        # A first start runs initdb and migrations on PostgreSQL: a generous bound.
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=180, watch=[script])
        yield Stack(
            script=script,
            base=f"http://127.0.0.1:{port}",
            data_dir=data_dir,
            server_ports=(pg_port, redis_port),
        )
    finally:
        script.kill()
        # Killed before its trap ran, the script leaves its servers (own sessions) running.
        subprocess.run(
            [VENV_BIN / "python", "-m", "alliance.embedded", "stop"],
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )


def free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def signed_in(stack: Stack, username: str) -> requests.Session:
    """A browser-like session signed in through the login form (with its CSRF token)."""
    session = http()
    session.get(f"{stack.base}/accounts/login/", timeout=10).raise_for_status()
    response = session.post(
        f"{stack.base}/accounts/login/",
        data={
            "username": username,
            "password": DEMO_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{stack.base}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def api_token(stack: Stack, username: str) -> str:
    response = http().post(
        f"{stack.base}/api/v1/auth/login/",
        json={"username": username, "password": DEMO_PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_the_login_page_speaks_chinese_unless_english_is_asked_for(stack):
    chinese = http().get(f"{stack.base}/accounts/login/", timeout=10)
    english = http().get(
        f"{stack.base}/accounts/login/", headers={"Accept-Language": "en"}, timeout=10
    )
    assert chinese.status_code == english.status_code == 200
    assert '<html lang="zh-hans">' in chinese.text
    assert "登录" in chinese.text
    assert '<html lang="en">' in english.text
    assert "Sign in" in english.text
    assert "登录" not in english.text


def test_a_demo_user_signs_in_and_uses_the_api(stack):
    session = signed_in(stack, "radiologist")
    home = session.get(f"{stack.base}/", allow_redirects=False, timeout=10)
    assert home.status_code == 200
    assert "张伟" in home.text
    me = session.get(f"{stack.base}/api/v1/me/", timeout=10).json()
    assert me["username"] == "radiologist"
    assert me["active_institution"]["code"] == "jc-central"
    assert me["roles"] == ["radiologist"]


def test_beat_and_the_worker_keep_the_heartbeat_fresh(stack):
    assert stack.health()["status"] == "ok"
    wait_until(
        lambda: stack.health()["checks"]["worker_heartbeat_age_s"] is not None,
        timeout=30,
        what="a first heartbeat",
        watch=[stack.script],
    )
    ages: list[float] = []

    def a_newer_heartbeat() -> bool:
        # The age only shrinks when beat sent, and the worker ran, another heartbeat.
        ages.append(stack.health()["checks"]["worker_heartbeat_age_s"])
        return len(ages) > 1 and ages[-1] < ages[-2]

    wait_until(
        a_newer_heartbeat, timeout=15, what="a newer heartbeat", interval=0.3, watch=[stack.script]
    )
    assert ages[-1] < 3


def test_a_grant_reaches_the_grantees_open_page_from_the_worker(stack):
    grantee = signed_in(stack, "radiologist")
    cookie = "; ".join(f"{name}={value}" for name, value in grantee.cookies.items())
    admin = http()
    admin.headers["Authorization"] = f"Token {api_token(stack, 'hospadmin')}"

    with open_socket(stack.ws, {"Cookie": cookie, "Origin": stack.base}) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"event": "hello", "payload": {"unread": 0}}
        response = admin.post(
            f"{stack.base}/api/v1/memberships/",
            json={"username": "radiologist", "role": "mdt_member"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        event = json.loads(ws.recv(timeout=30))

    assert event["event"] == "notification"
    assert event["payload"]["kind"] == "membership_granted"
    assert "江城市中心医院" in event["payload"]["title"]
    # The web process only queued the task: the row and the event came from the worker,
    # which logs the task done a moment after the event went out.
    wait_until(
        lambda: re.search(
            r"Task tenants\.tasks\.membership_notice_send\[[0-9a-f-]+\] "
            r"succeeded",
            stack.script.log(),
        ),
        timeout=30,
        what="the worker to log the task done",
        watch=[stack.script],
    )
    listed = grantee.get(f"{stack.base}/api/v1/notifications/", timeout=10).json()["results"]
    assert [n["id"] for n in listed] == [event["payload"]["id"]]


def test_the_commission_sees_the_demo_figures_computed_by_beat(stack):
    session = signed_in(stack, "commission")
    answers: list[dict] = []

    def refreshed() -> bool:
        response = session.get(f"{stack.base}/api/v1/analytics/volumes/", timeout=10)
        assert response.status_code == 200, response.text[:500]
        answers.append(response.json())
        return answers[-1]["meta"]["refreshed_at"] is not None

    wait_until(
        refreshed,
        timeout=60,
        what="beat's first analytics refresh",
        interval=1,
        watch=[stack.script],
    )
    volumes = answers[-1]
    # The three demo chest CTs of today, at two clinics, none sent for a remote read yet.
    assert volumes["totals"]["studies"] == 3
    assert {row["modality"]: row["studies"] for row in volumes["tables"]["by_modality"]} == {
        "CT": 3
    }
    assert sum(row["studies"] for row in volumes["tables"]["by_site"]) == 3
    page = session.get(f"{stack.base}/analytics/", timeout=10)
    assert page.status_code == 200
    assert "PostgreSQL" not in page.text


def test_a_page_action_reaches_another_users_open_page_from_the_web_process(stack):
    # The clinic's referring physician has the clinic's referrals open; the technician sends
    # a study for a consultation from its page. The web process publishes the event itself,
    # on commit, through the same Valkey channel layer production uses (no worker between).
    watcher = signed_in(stack, "referrer")
    technician = signed_in(stack, "tech")
    studies = technician.get(f"{stack.base}/studies/", timeout=10)
    assert studies.status_code == 200
    study = re.search(r'href="/studies/(\d+)/"', studies.text)
    assert study, studies.text[:500]

    with open_socket(
        stack.ws_referrals, {"Cookie": cookie_header(watcher), "Origin": stack.base}
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "hello"
        sent = technician.post(
            f"{stack.base}/studies/{study.group(1)}/refer/",
            data={
                "kind": "consultation",
                "priority": "routine",
                "clinical_question": "",
                "csrfmiddlewaretoken": technician.cookies["csrftoken"],
            },
            headers={"Referer": f"{stack.base}/studies/{study.group(1)}/refer/"},
            allow_redirects=False,
            timeout=10,
        )
        assert sent.status_code == 302, sent.text[:500]
        referral_id = int(re.search(r"/referrals/(\d+)/", sent.headers["Location"]).group(1))
        # The clinic's other live traffic (the demo site reads automatically) may come first.
        heard: list[dict] = []
        while not any(e["payload"].get("id") == referral_id for e in heard):
            heard.append(json.loads(ws.recv(timeout=30)))

    event = next(e for e in heard if e["payload"].get("id") == referral_id)
    assert event["event"] == "referral"
    assert event["payload"]["status"] == "requested"


def test_ctrl_c_stops_web_worker_and_beat_and_leaves_nothing(stack):
    programs = " ".join(" ".join(p.cmdline()) for p in stack.script.note_descendants())
    for program in (
        "uvicorn alliance.asgi:application",
        "celery -A alliance worker",
        "celery -A alliance beat",
    ):
        assert program in programs
    assert all(listening(port) for port in stack.server_ports)

    with open_socket(
        stack.ws, {"Authorization": f"Token {api_token(stack, 'tech')}", "Origin": stack.base}
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "hello"
        stack.script.signal_group(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert stack.script.wait(30) == 130, stack.script.tail()
        with pytest.raises(ConnectionClosed):  # an open socket did not hold the server up
            ws.recv(timeout=5)

    assert stack.script.survivors() == []
    assert processes_with_env("HUB_DATA_DIR", str(stack.data_dir)) == []
    log = stack.script.log()
    # Each stopped on its own: honcho did not have to SIGKILL a worker that hung.
    assert "SIGKILL" not in log, stack.script.tail()
    # No live event waited out its send timeout on the way (tenants/live.py's warning).
    assert "not sent within" not in log
    # PostgreSQL and Valkey (sessions of their own) were stopped by the script, after the rest.
    assert "[embedded] PostgreSQL stopped" in log
    assert "[embedded] Valkey stopped" in log
    assert not any(listening(port) for port in stack.server_ports)
    assert not (stack.data_dir / "postgres" / "data" / "postmaster.pid").exists()
    assert not (stack.data_dir / "valkey" / "valkey.pid").exists()


def test_make_test_runs_on_the_embedded_servers_where_none_is_installed(tmp_path: Path):
    """`make test` on a machine without PostgreSQL or Redis (HUB_TEST_SERVERS=embedded is also
    the fallback when none runs and none can be installed): the suite gets a superuser URL, so
    pytest-django can create its database, and a Valkey database of its own."""
    pg_port, redis_port = free_ports(2)
    env = base_env(
        HUB_TEST_SERVERS="embedded",
        HUB_TEST_SERVERS_DIR=str(tmp_path),
        HUB_TEST_PG_PORT=str(pg_port),
        HUB_TEST_REDIS_PORT=str(redis_port),
    )
    try:
        done = subprocess.run(
            [ROOT / "deploy" / "local" / "ensure-services.sh"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        urls = dict(re.findall(r"^(\w+)='([^']*)'$", done.stdout, flags=re.MULTILINE))
        assert f"@127.0.0.1:{pg_port}/" in urls["DATABASE_URL"]
        assert urls["REDIS_URL"].endswith(f"@127.0.0.1:{redis_port}/15")
        with psycopg.connect(urls["DATABASE_URL"], autocommit=True) as connection:
            connection.execute("CREATE DATABASE test_embedded_probe")
            connection.execute("DROP DATABASE test_embedded_probe")
            extensions = {
                row[0] for row in connection.execute("SELECT name FROM pg_available_extensions")
            }
        assert {"pg_trgm", "btree_gin"} <= extensions
        assert redis.Redis.from_url(urls["REDIS_URL"]).ping()
    finally:
        subprocess.run(
            [VENV_BIN / "python", "-m", "alliance.embedded", "stop"],
            env=env | {"HUB_DATA_DIR": str(tmp_path)},
            cwd=ROOT,
            timeout=120,
            check=False,
        )
