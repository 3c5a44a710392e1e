"""The master patient index: link, propose, refuse and unlink patient records (writes).

A linked set of records is one person: every record of the set, and every study of those
records, carries the same `patient_key` (the smallest own key of the set). Priors, the
patient's file and the commission's figures all read `patient_key`, so they follow the links
without code of their own; unlinking gives each side back the key of what is left of it.
Records with the same own key (same issuer and ID) are one person already.

Every change of a link appends a `PatientLinkEvent` and, when it links or unlinks (or a
person refuses a proposal), an audit event: nothing is deleted, so everything is reversible.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from alliance.models import AllianceMember
from referrals.models import (
    Instance,
    LinkMethod,
    LinkStatus,
    Patient,
    PatientLink,
    PatientLinkEvent,
    Study,
)
from tenants.access import Scope
from tenants.audit import AuditCode, AuditObject, audit_record
from tenants.errors import ConflictError

from . import matching
from .matching import PairScore, PatientRecord
from .names import name_match_form
from .resident_id import metadata_patient_ids, resident_id_find, resident_id_mask, resident_key

logger = logging.getLogger(__name__)

# One lock for every change of identity: links are rare, and two settles of overlapping
# sets must not interleave (each reads the set, then writes its key).
_IDENTITY_LOCK = 0x1D_E7_17_7E
# A person's decision is never overridden by the automatic linker.
_DECIDED_BY_A_PERSON = (LinkStatus.REJECTED, LinkStatus.UNLINKED)


class LinkError(ConflictError):
    """A link change that cannot be made (its message is for the person)."""


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_IDENTITY_LOCK])


# --- Keys of linked sets ---------------------------------------------------------------------


def patient_linked_set(patient_ids: Iterable[int]) -> set[int]:
    """Every record one person's records are joined to (links, and equal own keys)."""
    seen: set[int] = set()
    frontier = set(patient_ids)
    while frontier:
        seen |= frontier
        own = [
            k
            for k in Patient.objects.filter(pk__in=frontier).values_list("own_key", flat=True)
            if k
        ]
        same = set(Patient.objects.filter(own_key__in=own).values_list("pk", flat=True))
        links = PatientLink.objects.filter(status=LinkStatus.LINKED).filter(
            Q(patient_a__in=frontier) | Q(patient_b__in=frontier)
        )
        joined = {p for pair in links.values_list("patient_a_id", "patient_b_id") for p in pair}
        frontier = (same | joined) - seen
    return seen


def patient_keys_settle(*, patient_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Give each linked set that holds one of these records its key, on its records and
    their studies; returns how many records changed key. Call inside a transaction."""
    now = now or timezone.now()
    remaining = set(patient_ids)
    # A record written without its own key (older rows, hand-made rows): its key is its own.
    Patient.objects.filter(pk__in=remaining, own_key="").update(own_key=F("patient_key"))
    touched: set[int] = set()
    moved_total = 0
    while remaining:
        members = patient_linked_set({remaining.pop()})
        remaining -= members
        rows = list(
            Patient.objects.filter(pk__in=members).values_list("pk", "own_key", "patient_key")
        )
        # A record indexed before own keys existed: its key so far is its own.
        for pk, own, current in rows:
            if not own:
                Patient.objects.filter(pk=pk, own_key="").update(own_key=current)
        key = min((own or current) for _pk, own, current in rows)
        moved = [pk for pk, _own, current in rows if current != key]
        if moved:
            Patient.objects.filter(pk__in=moved).update(patient_key=key)
            Study.objects.filter(patient_id__in=moved).update(patient_key=key)
            moved_total += len(moved)
        touched |= members
    if moved_total:
        # Every record whose set changed, moved or not: the analytics recompute their days.
        Patient.objects.filter(pk__in=touched).update(identity_changed_at=now)
    return moved_total


# --- Links -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who changes a link: a person (scope) or the automatic linker (no scope)."""

    scope: Scope | None = None
    request: Any = None

    @property
    def user(self) -> Any:
        return self.scope.user if self.scope else None


AUTOMATIC = Actor()


def _audit_code(status: str, previous: str) -> str | None:
    if status == LinkStatus.LINKED:
        return AuditCode.PATIENT_LINKED
    if previous == LinkStatus.LINKED:
        return AuditCode.PATIENT_UNLINKED
    if status == LinkStatus.REJECTED:
        return AuditCode.PATIENT_LINK_REJECTED
    return None


def patient_link_set(
    *,
    alliance_id: int,
    a: int,
    b: int,
    status: str,
    method: str,
    actor: Actor = AUTOMATIC,
    score: float | None = None,
    features: dict[str, Any] | None = None,
    reason: str = "",
) -> PatientLink | None:
    """Record the pair's link with this status (idempotent); None for a pair of one record.

    The automatic linker never overrides a person's decision (refused or unlinked), and never
    lowers a link to a proposal.
    """
    if a == b:
        return None
    a, b = min(a, b), max(a, b)
    now = timezone.now()
    with transaction.atomic():
        _lock()
        link = (
            PatientLink.objects.select_for_update()
            .filter(alliance_id=alliance_id, patient_a_id=a, patient_b_id=b)
            .first()
        )
        previous = link.status if link else ""
        if link is not None and actor.scope is None:
            if link.status in _DECIDED_BY_A_PERSON or link.status == LinkStatus.LINKED:
                return link
            if link.status == status:
                return link
        if link is not None and link.status == status and link.method == method:
            return link
        if link is None:
            link = PatientLink(alliance_id=alliance_id, patient_a_id=a, patient_b_id=b)
            link.created_at = now
        link.status, link.method = status, method
        if score is not None:
            link.score = score
        if features is not None:
            link.features = features
        link.reason = reason[:300]
        link.decided_by = actor.user
        link.decided_at = now
        link.save()
        PatientLinkEvent.objects.create(
            link=link,
            status=status,
            previous_status=previous,
            method=method,
            score=link.score,
            reason=link.reason,
            by=actor.user,
            at=now,
        )
        if LinkStatus.LINKED in (status, previous):
            patient_keys_settle(patient_ids=[a, b], now=now)
        code = _audit_code(status, previous)
        if code is not None:
            pair = Patient.objects.filter(pk__in=[a, b]).order_by("pk")
            audit_record(
                event=code,
                action="U",
                scope=actor.scope,
                request=actor.request,
                username="" if actor.scope else "patient-linker",
                object_type=AuditObject.PATIENT_LINK,
                object_id=link.pk,
                detail={
                    "alliance": alliance_id,
                    "patients": [a, b],
                    "sites": [p.institution_id for p in pair],
                    "method": method,
                    "score": link.score,
                    "previous": previous,
                    "reason": link.reason,
                },
            )
    return link


def patient_link_decide(
    *, scope: Scope, link: PatientLink, same_person: bool, reason: str = "", request: Any = None
) -> PatientLink:
    """A person's answer to a link or a proposal: the same person, or not."""
    status = LinkStatus.LINKED if same_person else LinkStatus.REJECTED
    method = link.method if link.method else LinkMethod.MANUAL
    result = patient_link_set(
        alliance_id=link.alliance_id,
        a=link.patient_a_id,
        b=link.patient_b_id,
        status=status,
        method=method,
        actor=Actor(scope, request),
        reason=reason,
    )
    assert result is not None
    return result


def patient_unlink(
    *, scope: Scope, link: PatientLink, reason: str = "", request: Any = None
) -> PatientLink:
    """Undo a link: each side gets back the key of what remains linked to it."""
    if link.status != LinkStatus.LINKED:
        from django.utils.translation import gettext as _

        raise LinkError(_("Only a link in force can be undone."), code="not_linked")
    result = patient_link_set(
        alliance_id=link.alliance_id,
        a=link.patient_a_id,
        b=link.patient_b_id,
        status=LinkStatus.UNLINKED,
        method=link.method,
        actor=Actor(scope, request),
        reason=reason,
    )
    assert result is not None
    return result


def patient_link_manual(
    *,
    scope: Scope,
    alliance_id: int,
    patient: Patient,
    other: Patient,
    reason: str = "",
    request: Any = None,
) -> PatientLink:
    """A person links two records of the alliance as one person."""
    from django.utils.translation import gettext as _

    if patient.pk == other.pk:
        raise LinkError(_("A record cannot be linked to itself."), code="same_record")
    result = patient_link_set(
        alliance_id=alliance_id,
        a=patient.pk,
        b=other.pk,
        status=LinkStatus.LINKED,
        method=LinkMethod.MANUAL,
        actor=Actor(scope, request),
        reason=reason,
    )
    assert result is not None
    return result


# --- The automatic linker --------------------------------------------------------------------


def alliances_of_site(institution_id: int) -> list[int]:
    return list(
        AllianceMember.objects.filter(institution_id=institution_id)
        .values_list("alliance_id", flat=True)
        .distinct()
    )


def _sites(alliance_id: int) -> list[int]:
    return list(
        AllianceMember.objects.filter(alliance_id=alliance_id).values_list(
            "institution_id", flat=True
        )
    )


def patient_identity_read(*, patient: Patient) -> Patient:
    """Fill the record's match name and resident number key from what its instances carry."""
    resident = ""
    masked = ""
    metadata = (
        Instance.objects.filter(study__patient=patient)
        .order_by("-pk")
        .values_list("metadata", flat=True)[:1]
    )
    found = resident_id_find([patient.patient_id])
    for meta in metadata:
        found = found or resident_id_find(metadata_patient_ids(meta or {}))
    if found:
        resident, masked = resident_key(found), resident_id_mask(found)
    name = name_match_form(patient.name)
    changes = {
        field: value
        for field, value in (
            ("name_match", name),
            ("resident_key", resident or patient.resident_key),
            ("resident_id_masked", masked or patient.resident_id_masked),
        )
        if getattr(patient, field) != value
    }
    if changes:
        Patient.objects.filter(pk=patient.pk).update(**changes)
        for field, value in changes.items():
            setattr(patient, field, value)
    return patient


def _name_forms_fill(sites: list[int], limit: int = 2000) -> None:
    """Give records indexed since the last run their match name, so blocking finds them
    (ingest does not compute it: it stays a plain, fast INSERT)."""
    for pk, name in (
        Patient.objects.filter(institution_id__in=sites, name_match="")
        .exclude(name="")
        .values_list("pk", "name")[:limit]
    ):
        form = name_match_form(name)
        if form:
            Patient.objects.filter(pk=pk).update(name_match=form)


def _record(p: Patient) -> PatientRecord:
    return PatientRecord(
        pk=p.pk,
        name=p.name_match,
        birth_date=p.birth_date,
        sex=p.sex,
        resident_key=p.resident_key,
    )


def _apply(alliance_id: int, scores: Iterable[PairScore], upper: float, lower: float) -> None:
    for pair in scores:
        if pair.score >= upper:
            status = LinkStatus.LINKED
        elif pair.score >= lower:
            status = LinkStatus.PROPOSED
        else:
            continue
        patient_link_set(
            alliance_id=alliance_id,
            a=pair.a,
            b=pair.b,
            status=status,
            method=LinkMethod.DEMOGRAPHICS,
            score=pair.score,
            features=pair.features,
        )


def _resident_links(alliance_id: int, patient: Patient, sites: list[int]) -> None:
    if not patient.resident_key:
        return
    for other in (
        Patient.objects.filter(institution_id__in=sites, resident_key=patient.resident_key)
        .exclude(pk=patient.pk)
        .values_list("pk", flat=True)
    ):
        patient_link_set(
            alliance_id=alliance_id,
            a=patient.pk,
            b=other,
            status=LinkStatus.LINKED,
            method=LinkMethod.RESIDENT_ID,
        )


def patient_identity_refresh(
    *, patient_id: int, upper: float = matching.UPPER, lower: float = matching.LOWER
) -> int:
    """Link one record within each of its site's alliances: by resident number, then by
    demographics against the candidates that share its birth year or its name. Returns the
    number of candidates scored. Safe to repeat."""
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        return 0
    patient_identity_read(patient=patient)
    # A new record with the own key of a linked record joins that person's key.
    with transaction.atomic():
        _lock()
        patient_keys_settle(patient_ids=[patient.pk])
    patient.refresh_from_db(fields=["patient_key", "own_key"])
    scored = 0
    for alliance_id in alliances_of_site(patient.institution_id):
        sites = _sites(alliance_id)
        _resident_links(alliance_id, patient, sites)
        _name_forms_fill(sites)
        if not patient.name_match:
            continue
        blocks = Q(name_match=patient.name_match)
        if patient.birth_date is not None:
            year = patient.birth_date.year
            blocks |= Q(birth_date__gte=dt.date(year, 1, 1), birth_date__lt=dt.date(year + 1, 1, 1))
        candidates = [
            _record(p)
            for p in Patient.objects.filter(institution_id__in=sites)
            .filter(blocks)
            .exclude(pk=patient.pk)
            .exclude(own_key=patient.own_key or patient.patient_key)
            .exclude(name_match="")
            .only("pk", "name_match", "birth_date", "sex", "resident_key")[:5000]
        ]
        scored += len(candidates)
        _apply(alliance_id, matching.score_against(_record(patient), candidates), upper, lower)
    return scored


def alliance_links_rebuild(
    *, alliance_id: int, upper: float = matching.UPPER, lower: float = matching.LOWER
) -> dict[str, int]:
    """Run the linker over every record of the alliance (blocked pairs only); decisions made
    by people stand. Returns counts of what the run found."""
    sites = _sites(alliance_id)
    patients = list(Patient.objects.filter(institution_id__in=sites).order_by("pk"))
    for patient in patients:
        patient_identity_read(patient=patient)
    by_resident: dict[str, list[int]] = {}
    for p in patients:
        if p.resident_key:
            by_resident.setdefault(p.resident_key, []).append(p.pk)
    for group in by_resident.values():
        for other in group[1:]:
            patient_link_set(
                alliance_id=alliance_id,
                a=group[0],
                b=other,
                status=LinkStatus.LINKED,
                method=LinkMethod.RESIDENT_ID,
            )
    own = {p.pk: p.own_key or p.patient_key for p in patients}
    scores = [
        s
        for s in matching.all_pairs_score([_record(p) for p in patients if p.name_match])
        if own[s.a] != own[s.b]
    ]
    _apply(alliance_id, scores, upper, lower)
    return {
        "patients": len(patients),
        "pairs_scored": len(scores),
        "linked": sum(1 for s in scores if s.score >= upper),
        "proposed": sum(1 for s in scores if lower <= s.score < upper),
        "resident_groups": sum(1 for g in by_resident.values() if len(g) > 1),
    }
