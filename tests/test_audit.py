"""The audit trail: append-only in PostgreSQL, chained by hash, tampering detected."""

from __future__ import annotations

import re
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from tenants.audit import GENESIS_HASH, AuditCode, audit_chain_verify, audit_record
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


def _three(world) -> list[AuditEvent]:
    return [
        audit_record(
            event=AuditCode.QUERY,
            user=world.alice,
            institution=world.clinic,
            detail={"q": "PatientID=1"},
        ),
        audit_record(
            event=AuditCode.STUDY_VIEWED,
            user=world.rita,
            institution=world.reader,
            patient_id="P1",
            study_uid="1.2.3",
        ),
        audit_record(event=AuditCode.EXPORT, user=world.carl, institution=world.commission),
    ]


def test_events_link_into_one_chain(world):
    first, second, third = _three(world)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert list(audit_chain_verify()) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tenants_auditevent SET username = 'mallory'",
        "DELETE FROM tenants_auditevent",
    ],
)
def test_postgres_refuses_changes_to_the_trail(world, statement):
    _three(world)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.count() == 3


def test_the_orm_cannot_change_or_delete_an_event_either(world):
    event = _three(world)[0]
    event.username = "mallory"
    with pytest.raises(DatabaseError), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


def _tamper(sql: str, params: list) -> None:
    """Do what only a database owner could: switch the guard off, change a row."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks block ALTER
        cursor.execute("ALTER TABLE tenants_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE tenants_auditevent ENABLE TRIGGER USER")


def test_an_altered_event_is_detected(world):
    _first, second, _third = _three(world)
    _tamper("UPDATE tenants_auditevent SET patient_id = 'P2' WHERE id = %s", [second.pk])
    breaks = list(audit_chain_verify())
    assert [(b.event_id, "altered" in b.reason) for b in breaks] == [(second.pk, True)]
    with pytest.raises(CommandError, match="broken at 1 place"):
        call_command("audit_verify")


def test_a_removed_event_is_detected(world):
    _first, second, third = _three(world)
    _tamper("DELETE FROM tenants_auditevent WHERE id = %s", [second.pk])
    breaks = list(audit_chain_verify())
    assert [b.event_id for b in breaks] == [third.pk]
    assert "removed" in breaks[0].reason


def test_the_verify_command_reports_an_intact_chain(world, capsys):
    _three(world)
    call_command("audit_verify")
    assert "intact: 3 events" in capsys.readouterr().out


def test_web_sign_in_and_failure_are_recorded_with_the_address(world, client):
    client.post(
        "/accounts/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.1.2.3"
    )
    client.post(
        "/accounts/login/",
        {"username": "alice", "password": "correct-horse-battery"},
        REMOTE_ADDR="10.1.2.3",
    )
    failed, ok = AuditEvent.objects.order_by("id")
    assert (failed.event, failed.outcome, failed.username) == ("login_failed", 4, "alice")
    assert (ok.event, ok.outcome, ok.user_id_value) == ("login", 0, world.alice.pk)
    assert ok.source_address == "10.1.2.3"


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_unbroken_chain(world):
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(10):
                audit_record(
                    event=AuditCode.QUERY,
                    user=world.alice,
                    institution=world.clinic,
                    detail={"writer": n, "i": i},
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert AuditEvent.objects.count() == 80
    assert list(audit_chain_verify()) == []


def test_every_object_type_the_hub_writes_has_a_translated_label():
    """The audit page names what an event was about: each `object_type="..."` written in the
    code is a known AuditObject (a plain name such as "report_template", not a model path)."""
    from pathlib import Path

    from django.utils import translation

    from tenants.audit import AuditObject

    root = Path(__file__).resolve().parent.parent
    written: set[str] = set()
    for app in ("alliance", "tenants", "referrals", "reporting", "consultations"):
        for source in (root / app).rglob("*.py"):
            if "migrations" in source.parts:
                continue
            text = source.read_text()
            written |= set(re.findall(r'object_type="([^"]*)"', text))
            written |= {
                AuditObject[member].value
                for member in re.findall(r"object_type=AuditObject\.(\w+)", text)
            }
    assert {"routing_rule", "report_template", "alliance_policy", "pool_member"} <= written
    assert written - set(AuditObject.values) == set()
    event = AuditEvent(object_type="report_template")
    with translation.override("en"):
        assert event.object_label == "Report template"
