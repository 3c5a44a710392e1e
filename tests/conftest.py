"""The small world every test lives in (after healthchecks' Alice, Bob and Charlie).

Two alliances. In the first (north): a grassroots clinic, a central reader hospital and a
health commission. In the second (south): an outsider clinic that must see nothing of the
north. Each person holds one role:

- alice: clinic technician at the north clinic; adam: hospital admin at the north clinic
- rita: radiologist at the north reader hospital; carl: commission viewer (north)
- oscar: technician at the outsider clinic (south); otto: hospital admin there
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from alliance.models import Alliance, Tier
from tenants.models import Institution, InstitutionKind, Role, User

from .factories import AllianceFactory, InstitutionFactory, MembershipFactory, UserFactory, join


@dataclass
class World:
    north: Alliance
    south: Alliance
    clinic: Institution
    reader: Institution
    commission: Institution
    outsider: Institution
    alice: User
    adam: User
    rita: User
    carl: User
    oscar: User
    otto: User


def _person(username: str, name: str, name_en: str, institution: Institution, role: str) -> User:
    user = UserFactory(username=username, name=name, name_en=name_en)
    MembershipFactory(user=user, institution=institution, role=role)
    return user


@pytest.fixture(autouse=True)
def _postgres_only(request: pytest.FixtureRequest) -> None:
    """The suite runs against PostgreSQL, as production does; SQLite would hide bugs."""
    if "django_db_setup" in request.fixturenames or request.node.get_closest_marker("django_db"):
        assert connection.vendor == "postgresql", "run the tests with `make test` (PostgreSQL)"


@pytest.fixture(autouse=True)
def _celery_runs_inline_outside_integration_tests(request: pytest.FixtureRequest):
    """Unit tests run tasks inline; tests marked `integration` use a real worker instead."""
    from alliance.celery import app

    eager = request.node.get_closest_marker("integration") is None
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = eager
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def world(db: None) -> World:
    K = InstitutionKind  # noqa: N806
    reader = InstitutionFactory(
        code="north-central",
        name="北城中心医院",
        name_en="North Central Hospital",
        kind=K.CENTRAL_HOSPITAL,
    )
    commission = InstitutionFactory(
        code="north-hc",
        name="北城卫健委",
        name_en="North Health Commission",
        kind=K.HEALTH_COMMISSION,
    )
    clinic = InstitutionFactory(
        code="north-clinic",
        name="北山镇卫生院",
        name_en="Beishan Township Health Centre",
        kind=K.TOWNSHIP_CENTRE,
    )
    north = AllianceFactory(code="north", lead_hospital=reader, commission=commission)
    join(north, reader, Tier.CENTRAL)
    join(north, clinic, Tier.GRASSROOTS)

    south_lead = InstitutionFactory(
        code="south-central", name_en="South Central Hospital", kind=K.CENTRAL_HOSPITAL
    )
    outsider = InstitutionFactory(
        code="south-clinic",
        name="南岭村卫生室",
        name_en="Nanling Village Clinic",
        kind=K.GRASSROOTS_CLINIC,
    )
    south = AllianceFactory(code="south", lead_hospital=south_lead)
    join(south, south_lead, Tier.CENTRAL)
    join(south, outsider, Tier.GRASSROOTS)

    return World(
        north=north,
        south=south,
        clinic=clinic,
        reader=reader,
        commission=commission,
        outsider=outsider,
        alice=_person("alice", "艾丽斯", "Alice", clinic, Role.CLINIC_TECHNICIAN),
        adam=_person("adam", "亚当", "Adam", clinic, Role.HOSPITAL_ADMIN),
        rita=_person("rita", "丽塔", "Rita", reader, Role.RADIOLOGIST),
        carl=_person("carl", "卡尔", "Carl", commission, Role.COMMISSION_VIEWER),
        oscar=_person("oscar", "奥斯卡", "Oscar", outsider, Role.CLINIC_TECHNICIAN),
        otto=_person("otto", "奥托", "Otto", outsider, Role.HOSPITAL_ADMIN),
    )


def api_client_for(user: User, institution: Institution | None = None) -> APIClient:
    """An API client holding a real token of `user` (optionally naming an institution)."""
    _instance, token = AuthToken.objects.create(user=user)
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Token {token}", "HTTP_ACCEPT_LANGUAGE": "en"}
    if institution is not None:
        headers["HTTP_X_INSTITUTION"] = str(institution.pk)
    client.credentials(**headers)
    return client


@pytest.fixture
def api_for(world: World):
    return api_client_for


@pytest.fixture(autouse=True)
def _fresh_pool_when_threads_kept_connections() -> Iterator[None]:
    """In-process consumer tests run Channels' database threads inside this process; some of
    them end holding a pooled connection (seen with tests/test_live.py and test_mdt_room.py:
    about one per test). Over the whole suite that emptied the 20-connection pool and a later
    test waited 30 s for a connection. After a test that leaves more than a few connections
    checked out, start a new pool. (Servers under test run in their own processes.)"""
    yield
    from django.db import connections

    wrapper = connections["default"]
    pool = getattr(wrapper, "pool", None) if wrapper.vendor == "postgresql" else None
    if pool is None:
        return
    stats = pool.get_stats()
    if stats.get("pool_size", 0) - stats.get("pool_available", 0) > 4:
        wrapper.close()
        wrapper.close_pool()
