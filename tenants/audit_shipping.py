"""The audit trail shipped off the box: RFC 5424 syslog carrying DICOM audit messages.

Why this shape. MLPS level 3 and IHE ATNA want audit records kept where the audited system
cannot rewrite them. The trail itself is the spool: rows are append-only in PostgreSQL, so a
sink that is down loses nothing; `audit_ship` sends every row after the sink's cursor, in id
order, and moves the cursor only past what the socket took. A retry therefore re-sends at most
the batch that failed (at-least-once); each message carries its row id and hash in structured
data, so a collector drops repeats and can re-check the chain on its own side.

Each batch ends with an anchor message (the id and hash of the newest row shipped): the copy of
the chain's head that lives outside the box. Before sending, the shipper checks that the row it
anchored last is still there with the same hash; if the newest rows were deleted (and the chain
re-linked), it records a security alert and says so to the sink.

Messages are built by `rfc5424-logging-handler` (header, structured-data escaping, octet-counted
TCP or TLS framing per RFC 6587/5425); the payload is the DICOM PS3.15 A.5 audit message XML.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone
from rfc5424logging import LOG_AUTHPRIV, Rfc5424SysLogHandler
from rfc5424logging.transport import FRAMING_OCTET_COUNTING

from .audit import DICOM_EVENT_ID, AuditCode, audit_record
from .models import AuditEvent, AuditShipment

logger = logging.getLogger(__name__)

APP_NAME = "alliance-hub"
# IHE ITI TF-2 3.20.7.1: the MSGID of an audit message in syslog.
MSGID = "IHE+RFC-3881"
ANCHOR_MSGID = "HUB-ANCHOR"
BATCH = 500
_LOCK_BASE = 0x4155_4449_0000  # pg_advisory_lock keys owned by the audit shipper


class AuditSinkError(Exception):
    """The sink could not be reached or took the connection down mid-batch."""


@dataclass(frozen=True)
class ShipResult:
    sent: int
    last_id: int
    anchor_ok: bool


def _code(parent: ET.Element, tag: str, coded: str) -> ET.Element:
    """`DCM 110114 User Authentication` -> csd-code/codeSystemName/originalText attributes."""
    system, code, meaning = coded.split(" ", 2)
    return ET.SubElement(parent, tag, csd_code=code, codeSystemName=system, originalText=meaning)


def dicom_audit_message(event: AuditEvent) -> str:
    """One trail row as a DICOM PS3.15 A.5.1 AuditMessage (XML)."""
    root = ET.Element("AuditMessage")
    identification = ET.SubElement(
        root,
        "EventIdentification",
        EventActionCode=event.action,
        EventDateTime=event.occurred_at.astimezone(UTC).isoformat(),
        EventOutcomeIndicator=str(event.outcome),
    )
    coded = DICOM_EVENT_ID.get(AuditCode(event.event)) if event.event in AuditCode else None
    _code(identification, "EventID", coded or "DCM 110100 Application Activity")
    ET.SubElement(
        identification,
        "EventTypeCode",
        csd_code=event.event,
        codeSystemName="99HUB",
        originalText=str(AuditCode(event.event).label) if event.event in AuditCode else "",
    )
    participant = ET.SubElement(
        root,
        "ActiveParticipant",
        UserID=event.username or "-",
        UserIsRequestor="true",
    )
    if event.source_address:
        participant.set("NetworkAccessPointID", event.source_address)
        participant.set("NetworkAccessPointTypeCode", "2")  # an IP address
    if event.role:
        ET.SubElement(
            participant, "RoleIDCode", csd_code=event.role, codeSystemName="99HUB", originalText=""
        )
    ET.SubElement(
        root,
        "AuditSourceIdentification",
        AuditSourceID=settings.AUDIT_SOURCE_ID,
        AuditEnterpriseSiteID=event.institution_code or "-",
    )
    if event.patient_id:
        patient = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            ParticipantObjectID=event.patient_id,
            ParticipantObjectTypeCode="1",  # person
            ParticipantObjectTypeCodeRole="1",  # patient
        )
        _code(patient, "ParticipantObjectIDTypeCode", "RFC-3881 2 Patient Number")
    if event.study_uid:
        study = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            ParticipantObjectID=event.study_uid,
            ParticipantObjectTypeCode="2",  # system object
            ParticipantObjectTypeCodeRole="3",  # report
        )
        _code(study, "ParticipantObjectIDTypeCode", "DCM 110180 Study Instance UID")
    if event.object_type and event.object_id:
        ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            ParticipantObjectID=f"{event.object_type}:{event.object_id}",
            ParticipantObjectTypeCode="2",
            ParticipantObjectTypeCodeRole="13",  # security resource
        )
    # ElementTree cannot write a hyphen in a keyword; DICOM's attribute is `csd-code`.
    return ET.tostring(root, encoding="unicode").replace("csd_code=", "csd-code=")


class _Sink:
    """One connection to the collector, through the library's handler (raising, not logging,
    on a failed send: a lost message must stop the batch, never pass silently)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.handler: Rfc5424SysLogHandler | None = None
        if parts.scheme not in {"tcp", "tls"} or not parts.hostname or not parts.port:
            raise AuditSinkError(
                f"AUDIT_SYSLOG_URL must be tcp://host:port or tls://host:port: {url}"
            )
        try:
            self.handler = Rfc5424SysLogHandler(
                address=(parts.hostname, parts.port),
                socktype=socket.SOCK_STREAM,
                framing=FRAMING_OCTET_COUNTING,
                facility=LOG_AUTHPRIV,
                appname=APP_NAME,
                hostname=settings.AUDIT_SOURCE_ID,
                enterprise_id=settings.AUDIT_SYSLOG_ENTERPRISE_ID,
                utc_timestamp=True,
                msg_as_utf8=True,
                timeout=settings.AUDIT_SYSLOG_TIMEOUT,
                tls_enable=parts.scheme == "tls",
                tls_ca_bundle=settings.AUDIT_SYSLOG_CA_FILE or None,
                tls_verify=True,
            )
        except OSError as error:  # the handler connects as it is made
            raise AuditSinkError(f"audit sink unreachable: {error}") from error

    def send(self, *, msgid: str, level: int, text: str, data: dict[str, str], at: float) -> None:
        record = logging.LogRecord(APP_NAME, level, __file__, 0, text, None, None)
        record.created = at
        record.msgid = msgid
        record.structured_data = {"hub": data}
        assert self.handler is not None
        try:
            self.handler.transport.transmit(self.handler.build_msg(record))
        except OSError as error:
            raise AuditSinkError(f"audit sink unreachable: {error}") from error

    def close(self) -> None:
        if self.handler is not None:
            with contextlib.suppress(OSError):
                self.handler.close()


def _level(event: AuditEvent) -> int:
    if event.event == AuditCode.SECURITY_ALERT:
        return logging.CRITICAL
    return logging.INFO if event.outcome == AuditEvent.Outcome.SUCCESS else logging.WARNING


def _anchor_holds(shipment: AuditShipment) -> bool:
    if not shipment.last_id:
        return True
    stored = AuditEvent.objects.filter(pk=shipment.last_id).values_list("hash", flat=True).first()
    return stored == shipment.last_hash


@contextlib.contextmanager
def _only_shipper(sink: str) -> Iterator[bool]:
    """One shipper per sink at a time (beat may overlap a slow run): a session advisory lock."""
    key = _LOCK_BASE + zlib.crc32(sink.encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _check_anchor(shipment: AuditShipment) -> bool:
    """Is the newest row shipped still there, unchanged? If not, say so once, loudly."""
    if _anchor_holds(shipment):
        return True
    if not shipment.tamper_reported_at:
        audit_record(
            event=AuditCode.SECURITY_ALERT,
            outcome=AuditEvent.Outcome.MAJOR_FAILURE,
            object_type="audit_trail",
            object_id=shipment.last_id,
            detail={
                "reason": "audit_rows_removed_after_shipment",
                "anchored_id": shipment.last_id,
                "anchored_hash": shipment.last_hash,
            },
        )
        shipment.tamper_reported_at = timezone.now()
        shipment.save(update_fields=["tamper_reported_at"])
        logger.critical("audit rows shipped up to %s are gone or changed", shipment.last_id)
    return False


def audit_ship(*, sink: str = "default", url: str | None = None, batch: int = BATCH) -> ShipResult:
    """Send the rows the sink has not had yet, oldest first, then an anchor. Raises
    AuditSinkError (the cursor kept at the last row the socket took) if the sink is down."""
    url = url or settings.AUDIT_SYSLOG_URL
    if not url:
        return ShipResult(sent=0, last_id=0, anchor_ok=True)
    with _only_shipper(sink) as mine:
        if not mine:
            return ShipResult(sent=0, last_id=0, anchor_ok=True)
        shipment, _ = AuditShipment.objects.get_or_create(name=sink)
        anchor_ok = _check_anchor(shipment)
        sent = 0
        try:
            sink_connection = _Sink(url)
        except AuditSinkError as error:
            _save_cursor(shipment, error=str(error))
            raise
        try:
            while True:
                rows: Sequence[AuditEvent] = list(
                    AuditEvent.objects.filter(pk__gt=shipment.last_id).order_by("pk")[:batch]
                )
                if not rows:
                    break
                for row in rows:
                    sink_connection.send(
                        msgid=MSGID,
                        level=_level(row),
                        text=dicom_audit_message(row),
                        data={"id": str(row.pk), "hash": row.hash, "prev": row.prev_hash},
                        at=row.occurred_at.timestamp(),
                    )
                    sent += 1
                    # The cursor follows each row the socket took: a failure mid-batch
                    # re-sends from the first row it did not take.
                    shipment.last_id, shipment.last_hash = row.pk, row.hash
                sink_connection.send(
                    msgid=ANCHOR_MSGID,
                    level=logging.INFO if anchor_ok else logging.CRITICAL,
                    text="audit chain head" if anchor_ok else "audit chain head; rows were removed",
                    data={"id": str(shipment.last_id), "hash": shipment.last_hash},
                    at=timezone.now().timestamp(),
                )
                _save_cursor(shipment, error="")
        except AuditSinkError as error:
            _save_cursor(shipment, error=str(error))
            raise
        finally:
            sink_connection.close()
    return ShipResult(sent=sent, last_id=shipment.last_id, anchor_ok=anchor_ok)


def _save_cursor(shipment: AuditShipment, *, error: str) -> None:
    now = timezone.now()
    fields = ["last_id", "last_hash", "last_error", "updated_at"]
    shipment.last_error = error[:500]
    shipment.updated_at = now
    if not error:
        shipment.last_shipped_at = now
        fields.append("last_shipped_at")
    shipment.save(update_fields=fields)
