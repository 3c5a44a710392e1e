"""The audit trail: one function records every security-relevant event, chained by SHA-256.

Why not django-auditlog or django-pghistory: both record row diffs of models. MLPS level 3
and DICOM PS3.15 ask for *semantic* events (a login, a query, a study viewed, an export),
including reads and failures that change no row. The append-only guarantee comes from the
database itself (triggers in tenants/migrations/0002), the tamper evidence from the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Required, TypedDict, Unpack

from django.db import connection, transaction
from django.db.models import TextChoices
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import AuditEvent, Institution, User

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .access import Scope

GENESIS_HASH = "0" * 64
_CHAIN_LOCK_KEY = 0x4855_4241_5544  # pg_advisory_xact_lock key owned by the audit chain


class AuditCode(TextChoices):
    """What happened. Each maps to a DICOM PS3.16 CID 400 audit event id (see DICOM_EVENT_ID)."""

    LOGIN = "login", _("Login")
    LOGIN_FAILED = "login_failed", _("Failed login")
    LOGOUT = "logout", _("Logout")
    QUERY = "query", _("Query")
    STUDY_VIEWED = "study_viewed", _("Study viewed")
    IMAGES_VIEWED = "images_viewed", _("Images viewed")
    INSTANCES_STORED = "instances_stored", _("Instances stored")
    EXPORT = "export", _("Export")
    REPORT_SIGNED = "report_signed", _("Report signed")
    REPORT_EDITED = "report_edited", _("Report edited at its second read")
    PERMISSION_CHANGE = "permission_change", _("Permission change")
    CREDENTIAL_CHANGE = "credential_change", _("Credential change")
    INSTITUTION_SWITCH = "institution_switch", _("Active institution switched")
    SHARE_LINK_OPENED = "share_link_opened", _("Share link opened")
    SECURITY_ALERT = "security_alert", _("Security alert")
    MDT_ROOM_JOINED = "mdt_room_joined", _("MDT room joined")
    MDT_CONCLUSION = "mdt_conclusion", _("MDT conclusion recorded")
    MDT_VOTE = "mdt_vote", _("MDT vote cast")
    MDT_CASE_CLOSED = "mdt_case_closed", _("MDT case closed")
    MDT_SESSION_CLOSED = "mdt_session_closed", _("MDT session closed")
    AUDIT_VIEWED = "audit_viewed", _("Audit trail viewed")
    ACCOUNT_CHANGE = "account_change", _("Account change")
    CONFIGURATION_CHANGE = "configuration_change", _("Configuration change")
    STUDY_CORRECTED = "study_corrected", _("Study corrected")
    INSTANCES_REJECTED = "instances_rejected", _("Instances rejected")
    REJECTION_UNDONE = "rejection_undone", _("Rejection undone")
    INSTANCE_HELD = "instance_held", _("Instance held for reconciliation")
    INSTANCE_RECONCILED = "instance_reconciled", _("Held instance resolved")
    INSTANCE_CONFLICT = "instance_conflict", _("Different data set under a stored SOP Instance UID")
    PATIENT_LINKED = "patient_linked", _("Patient records linked as one person")
    PATIENT_UNLINKED = "patient_unlinked", _("Patient records unlinked")
    PATIENT_LINK_REJECTED = "patient_link_rejected", _("Patient records judged not the same person")
    PATIENT_ID_ISSUER_SET = "patient_id_issuer_set", _("Issuer of patient IDs set")
    EXAM_REGISTERED = "exam_registered", _("Exam registered")
    EXAM_CANCELLED = "exam_cancelled", _("Registered exam cancelled")


DICOM_EVENT_ID = {
    AuditCode.LOGIN: "DCM 110114 User Authentication",
    AuditCode.LOGIN_FAILED: "DCM 110114 User Authentication",
    AuditCode.LOGOUT: "DCM 110114 User Authentication",
    AuditCode.QUERY: "DCM 110112 Query",
    AuditCode.STUDY_VIEWED: "DCM 110110 Patient Record",
    AuditCode.IMAGES_VIEWED: "DCM 110103 DICOM Instances Accessed",
    AuditCode.INSTANCES_STORED: "DCM 110104 DICOM Instances Transferred",
    AuditCode.EXPORT: "DCM 110106 Export",
    AuditCode.REPORT_SIGNED: "DCM 110110 Patient Record",
    AuditCode.REPORT_EDITED: "DCM 110110 Patient Record",
    AuditCode.PERMISSION_CHANGE: "DCM 110136 Security Roles Changed",
    AuditCode.CREDENTIAL_CHANGE: "DCM 110137 User Security Attributes Changed",
    AuditCode.INSTITUTION_SWITCH: "DCM 110114 User Authentication",
    AuditCode.SHARE_LINK_OPENED: "DCM 110103 DICOM Instances Accessed",
    AuditCode.SECURITY_ALERT: "DCM 110113 Security Alert",
    AuditCode.MDT_ROOM_JOINED: "DCM 110110 Patient Record",
    AuditCode.MDT_CONCLUSION: "DCM 110110 Patient Record",
    AuditCode.MDT_VOTE: "DCM 110110 Patient Record",
    AuditCode.MDT_CASE_CLOSED: "DCM 110110 Patient Record",
    AuditCode.MDT_SESSION_CLOSED: "DCM 110110 Patient Record",
    AuditCode.AUDIT_VIEWED: "DCM 110101 Audit Log Used",
    AuditCode.ACCOUNT_CHANGE: "DCM 110137 User Security Attributes Changed",
    AuditCode.CONFIGURATION_CHANGE: "DCM 110131 Software Configuration",
    AuditCode.STUDY_CORRECTED: "DCM 110110 Patient Record",
    AuditCode.INSTANCES_REJECTED: "DCM 110105 DICOM Study Deleted",
    AuditCode.REJECTION_UNDONE: "DCM 110110 Patient Record",
    AuditCode.INSTANCE_HELD: "DCM 110104 DICOM Instances Transferred",
    AuditCode.INSTANCE_RECONCILED: "DCM 110110 Patient Record",
    AuditCode.INSTANCE_CONFLICT: "DCM 110104 DICOM Instances Transferred",
    AuditCode.PATIENT_LINKED: "DCM 110110 Patient Record",
    AuditCode.PATIENT_UNLINKED: "DCM 110110 Patient Record",
    AuditCode.PATIENT_LINK_REJECTED: "DCM 110110 Patient Record",
    AuditCode.PATIENT_ID_ISSUER_SET: "DCM 110131 Software Configuration",
    AuditCode.EXAM_REGISTERED: "DCM 110110 Patient Record",
    AuditCode.EXAM_CANCELLED: "DCM 110110 Patient Record",
}


class AuditObject(TextChoices):
    """What an event was about (`AuditEvent.object_type`), named for the audit page."""

    ADDENDUM = "addendum", _("Addendum")
    ALLIANCE_POLICY = "alliance_policy", _("Alliance policy")
    API_TOKEN = "api_token", _("API token")
    AUDIT_EVENT = "audit_event", _("Audit event")
    AUDIT_TRAIL = "audit_trail", _("Audit trail")
    CONNECTED_SYSTEM = "connected_system", _("Connected system")
    EXAM_REGISTRATION = "exam_registration", _("Registered exam")
    GATEWAY_CREDENTIAL = "gateway_credential", _("Gateway credential")
    HELD_INSTANCE = "held_instance", _("Held instance")
    INSTANCE = "instance", _("Image")
    INSTITUTION = "institution", _("Institution")
    MDT_SESSION = "mdt_session", _("MDT session")
    MEMBERSHIP = "membership", _("Membership")
    PATIENT_ID_ISSUER = "patient_id_issuer", _("Issuer of patient IDs")
    PATIENT_LINK = "patient_link", _("Patient link")
    PASSWORD = "password", _("Password")
    POOL_MEMBER = "pool_member", _("Pool member")
    QUERY = "query", _("Query")
    READER_POOL = "reader_pool", _("Reader pool")
    REFERRAL = "referral", _("Referral")
    REPORT = "report", _("Report")
    REPORT_EDITOR = "report_editor", _("Report editor")
    REPORT_TEMPLATE = "report_template", _("Report template")
    ROSTER_SHIFT = "roster_shift", _("Roster shift")
    ROUTING_RULE = "routing_rule", _("Routing rule")
    SERIES = "series", _("Series")
    SHARE_LINK = "share_link", _("Share link")
    STUDY = "study", _("Study")
    USER = "user", _("User")


def client_address(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def _canonical(row: dict[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "event": event.event,
        "action": event.action,
        "outcome": int(event.outcome),
        "user_id": event.user_id_value,
        "username": event.username,
        "role": event.role,
        "institution_id": event.institution_id,
        "institution_code": event.institution_code,
        "source_address": event.source_address,
        "patient_id": event.patient_id,
        "study_uid": event.study_uid,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "detail": event.detail,
    }


def event_hash(event: AuditEvent, prev_hash: str) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(_hashed_fields(event))).hexdigest()


def audit_row(
    *,
    event: str,
    action: str = AuditEvent.Action.EXECUTE,
    outcome: int = AuditEvent.Outcome.SUCCESS,
    scope: Scope | None = None,
    user: User | None = None,
    institution: Institution | None = None,
    request: HttpRequest | None = None,
    username: str = "",
    patient_id: str = "",
    study_uid: str = "",
    object_type: str = "",
    object_id: str | int = "",
    detail: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """One event, not yet on the trail (audit_append puts it there)."""
    if scope is not None:
        user = user or scope.user
        institution = institution or scope.institution
        role = ",".join(sorted(scope.roles))
        if scope.connected_system is not None and not username:
            # A system, not a person, is the actor: named by its key id and its name.
            system = scope.connected_system
            username = f"{system.key_id} ({system.name})"
    else:
        role = ""
    if user is not None and not user.is_authenticated:
        user = None
    # Round-trip the detail through JSON so the hash sees exactly what the database stores.
    clean_detail = json.loads(json.dumps(detail or {}, default=str))
    return AuditEvent(
        occurred_at=occurred_at or timezone.now(),
        event=str(event),
        action=str(action),
        outcome=int(outcome),
        user_id_value=user.pk if user else None,
        username=(user.get_username() if user else username)[:150],
        role=role[:32],
        institution=institution,
        institution_code=institution.code if institution else "",
        source_address=client_address(request),
        patient_id=str(patient_id)[:128],
        study_uid=str(study_uid)[:64],
        object_type=object_type[:60],
        object_id=str(object_id)[:128],
        detail=clean_detail,
    )


def audit_append(rows: Sequence[AuditEvent]) -> None:
    """Put events on the trail in this order, in one transaction: each links to the one
    before it (many at once take the chain's lock once: a room of hundreds joining)."""
    if not rows:
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Serialise writers so each row links to the one committed before it.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
        prev = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev = prev or GENESIS_HASH
        for row in rows:
            row.prev_hash = prev
            row.hash = prev = event_hash(row, prev)
        if len(rows) == 1:
            rows[0].save(force_insert=True)
        else:  # ids follow the list's order: the chain is read back by id
            AuditEvent.objects.bulk_create(rows)


class AuditFields(TypedDict, total=False):
    """audit_row's arguments."""

    event: Required[str]
    action: str
    outcome: int
    scope: Scope | None
    user: User | None
    institution: Institution | None
    request: HttpRequest | None
    username: str
    patient_id: str
    study_uid: str
    object_type: str
    object_id: str | int
    detail: dict[str, Any] | None
    occurred_at: datetime | None


def audit_record(**fields: Unpack[AuditFields]) -> AuditEvent:
    """Append one event to the trail. Callers pass a scope, or a user and an institution."""
    row = audit_row(**fields)
    audit_append([row])
    return row


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def audit_chain_verify(*, batch_size: int = 2000) -> Iterator[ChainBreak]:
    """Recompute the chain in id order and yield every place it does not hold."""
    expected_prev = GENESIS_HASH
    last_id = 0
    while True:
        batch = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            return
        for event in batch:
            if event.prev_hash != expected_prev:
                yield ChainBreak(event.pk, "previous hash does not match (a row removed?)")
            if event_hash(event, event.prev_hash) != event.hash:
                yield ChainBreak(event.pk, "content does not match its hash (row altered?)")
            expected_prev = event.hash
            last_id = event.pk


def audit_read(
    *,
    event: str,
    scope: Scope,
    request: HttpRequest | None,
    study: Any = None,
    object_type: str = "",
    object_id: str | int = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """One read of patient data (a page or an answer that showed it): who, where, which
    patient and study. Called once per request by the view that shows the data."""
    return audit_record(
        event=event,
        action=AuditEvent.Action.READ,
        scope=scope,
        request=request,
        patient_id=getattr(study, "pid", "") or "",
        study_uid=getattr(study, "study_uid", "") or "",
        object_type=object_type,
        object_id=object_id,
        detail=detail,
    )
