"""The audit trail leaves the box as RFC 5424 syslog to a collector listening on a real socket:
DICOM audit messages, in order, nothing lost while the collector is down, and the newest rows
removed after shipment are noticed."""

from __future__ import annotations

import logging
import socketserver
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from defusedxml import ElementTree as DefusedET
from django.db import connection
from syslog_rfc5424_parser import SyslogMessage

from tenants.audit import AuditCode, audit_record
from tenants.audit_shipping import ANCHOR_MSGID, MSGID, AuditSinkError, audit_ship
from tenants.models import AuditEvent, AuditShipment
from tenants.tasks import audit_ship_task

pytestmark = pytest.mark.django_db


class Collector:
    """A syslog collector: TCP, octet-counted frames (RFC 6587 3.4.1), parsed by a library
    written for collectors (syslog-rfc5424-parser), not by the code under test."""

    def __init__(self, port: int = 0) -> None:
        self.messages: list[SyslogMessage] = []
        collector = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    length = b""
                    while (byte := self.rfile.read(1)) not in (b" ", b""):
                        length += byte
                    if not length:
                        return
                    frame = self.rfile.read(int(length))
                    collector.messages.append(SyslogMessage.parse(frame.decode("utf-8")))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def audit(self) -> list[SyslogMessage]:
        return [m for m in self.messages if m.msgid == MSGID]

    def ids(self) -> list[int]:
        return [int(m.sd["hub@32473"]["id"]) for m in self.audit()]

    def wait_for(self, count: int) -> None:
        # The server reads on its own thread: wait (bounded) until it has parsed `count`.
        for _ in range(500):
            if len(self.messages) >= count:
                return
            threading.Event().wait(0.01)


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.stop()


def _xml(message: SyslogMessage) -> ET.Element:
    return DefusedET.fromstring(message.msg.lstrip("\ufeff"))


def _attr(element: ET.Element, path: str, name: str) -> str | None:
    found = element.find(path)
    assert found is not None, path
    return found.get(name)


def _events(world) -> list[AuditEvent]:
    return [
        audit_record(event=AuditCode.LOGIN, user=world.alice, institution=world.clinic),
        audit_record(
            event=AuditCode.STUDY_VIEWED,
            user=world.rita,
            institution=world.reader,
            patient_id="P-1001",
            study_uid="1.2.826.0.1.3680043.8.498.1",
        ),
        audit_record(
            event=AuditCode.LOGIN_FAILED,
            outcome=AuditEvent.Outcome.MINOR_FAILURE,
            username="mallory",
            institution=world.clinic,
        ),
    ]


def test_each_row_reaches_the_collector_as_a_dicom_audit_message(world, collector):
    _events(world)
    rows = list(AuditEvent.objects.order_by("pk"))
    result = audit_ship(url=collector.url)
    collector.wait_for(len(rows) + 1)

    assert result.sent == len(rows)
    assert collector.ids() == [row.pk for row in rows]
    first = collector.audit()[0]
    assert (first.facility.name, first.appname, first.version) == ("authpriv", "alliance-hub", 1)
    assert [m.sd["hub@32473"]["hash"] for m in collector.audit()] == [r.hash for r in rows]

    viewed = _xml(next(m for m in collector.audit() if "P-1001" in m.msg))
    assert _attr(viewed, "EventIdentification/EventID", "csd-code") == "110110"
    assert _attr(viewed, "ActiveParticipant", "UserID") == world.rita.username
    objects = {
        _attr(o, "ParticipantObjectIDTypeCode", "csd-code"): o.get("ParticipantObjectID")
        for o in viewed.findall("ParticipantObjectIdentification")
    }
    assert objects == {"2": "P-1001", "110180": "1.2.826.0.1.3680043.8.498.1"}

    failed = next(m for m in collector.audit() if "mallory" in m.msg)
    assert failed.severity.name == "warning"
    outcome = _attr(_xml(failed), "EventIdentification", "EventOutcomeIndicator")
    assert outcome == str(AuditEvent.Outcome.MINOR_FAILURE)

    anchor = collector.messages[-1]
    assert anchor.msgid == ANCHOR_MSGID
    assert anchor.sd["hub@32473"] == {"id": str(rows[-1].pk), "hash": rows[-1].hash}


def test_rows_wait_while_the_collector_is_down_and_replay_in_order(world, collector):
    _events(world)
    audit_ship(url=collector.url)
    shipped = AuditShipment.objects.get(name="default").last_id
    port = collector.port
    collector.stop()

    later = _events(world)
    with pytest.raises(AuditSinkError):
        audit_ship(url=collector.url)
    shipment = AuditShipment.objects.get(name="default")
    assert shipment.last_id == shipped
    assert "unreachable" in shipment.last_error
    audit_ship_task()  # beat's call: a sink down is a warning, not a crashed task

    back = Collector(port)
    try:
        result = audit_ship(url=back.url)
        back.wait_for(len(later) + 1)
        assert back.ids() == [row.pk for row in later]
        assert result.last_id == later[-1].pk
        assert AuditShipment.objects.get(name="default").last_error == ""
        # Nothing twice over both runs, nothing missing.
        everything = collector.ids() + back.ids()
        assert everything == list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True))
    finally:
        back.stop()


def test_the_newest_rows_removed_after_shipment_raise_a_security_alert(
    world, collector, caplog: pytest.LogCaptureFixture
):
    rows = _events(world)
    audit_ship(url=collector.url)
    with connection.cursor() as cursor:  # what only the database's owner could do
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE tenants_auditevent DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM tenants_auditevent WHERE id >= %s", [rows[1].pk])
        cursor.execute("ALTER TABLE tenants_auditevent ENABLE TRIGGER USER")

    with caplog.at_level(logging.CRITICAL, logger="tenants.audit_shipping"):
        result = audit_ship(url=collector.url)
    assert result.anchor_ok is False
    alert = AuditEvent.objects.get(event=AuditCode.SECURITY_ALERT)
    assert alert.detail["reason"] == "audit_rows_removed_after_shipment"
    assert alert.detail["anchored_id"] == rows[-1].pk
    collector.wait_for(len(rows) + 4)
    assert collector.messages[-1].msgid == ANCHOR_MSGID
    assert collector.messages[-1].severity.name == "crit"
    # Said once: the next run does not raise the alert again.
    audit_ship(url=collector.url)
    assert AuditEvent.objects.filter(event=AuditCode.SECURITY_ALERT).count() == 1


def test_without_a_sink_nothing_is_sent_and_nothing_is_recorded(world, settings):
    settings.AUDIT_SYSLOG_URL = ""
    _events(world)
    assert audit_ship().sent == 0
    assert not AuditShipment.objects.exists()
