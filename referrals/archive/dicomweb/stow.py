"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related application/dicom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.utils.translation import gettext as _
from rest_framework.request import Request

from referrals.archive.dicom_checks import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    TOO_LARGE,
    Refusal,
)
from referrals.archive.dicomweb.base import dicom_json_response, element
from referrals.archive.dicomweb.multipart import (
    BodyTooLargeError,
    MultipartError,
    ReceivedPart,
    parse_content_type,
    read_parts,
)
from referrals.archive.ingest import IngestContext, StoreOutcome, ingest_audit, instance_store
from tenants.access import Scope

PRIVATE_CREATOR = "ALLIANCE HUB"


def _failed_item(outcome: StoreOutcome) -> dict[str, Any]:
    item = {
        "00081150": element("UI", outcome.sop_class_uid or None),
        "00081155": element("UI", outcome.sop_uid or None),
        "00081197": element("US", outcome.reason),
        # The reason in words, in a private element: clients that don't know it ignore it.
        "00090010": element("LO", PRIVATE_CREATOR),
        "00091001": element("LT", outcome.message),
    }
    return item


def store_response(outcomes: list[StoreOutcome], *, base_url: str, note: str = "") -> HttpResponse:
    stored = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    body: dict[str, Any] = {}
    study_uids = {o.study_uid for o in stored}
    if len(study_uids) == 1:
        body["00081190"] = element("UR", f"{base_url}/studies/{study_uids.pop()}")
    if stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": element("UI", o.sop_class_uid),
                    "00081155": element("UI", o.sop_uid),
                    "00081190": element(
                        "UR",
                        f"{base_url}/studies/{o.study_uid}/series/"
                        f"{o.extra['series_uid']}/instances/{o.sop_uid}"
                        if "series_uid" in o.extra
                        else None,
                    ),
                }
                for o in stored
            ],
        }
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if not outcomes:
        status = 400
    elif not failed and not note:
        status = 200
    elif stored:
        status = 202
    else:
        status = 409
    response = dicom_json_response(body, status=status)
    if note:
        response["Warning"] = f'299 hub "{note[:200]}"'
    return response


def stow(request: Request, scope: Scope, study_uid: str | None = None) -> HttpResponse:
    """POST /studies and /studies/{study}: one outcome per part, never a half-stored part."""
    raw = request._request
    content_type, params = parse_content_type(raw.META.get("CONTENT_TYPE", ""))
    part_type = params.get("type", "application/dicom").lower()
    if content_type != "multipart/related" or "boundary" not in params:
        return _plain(415, 'STOW-RS takes multipart/related; type="application/dicom".')
    if part_type != "application/dicom":
        return _plain(415, "Only application/dicom parts are accepted.")
    length = int(raw.META.get("CONTENT_LENGTH") or 0)
    if length > settings.HUB_MAX_STOW_BYTES:
        return _plain(413, f"The request is larger than {settings.HUB_MAX_STOW_BYTES} bytes.")
    assert scope.institution is not None
    via = "gateway" if scope.is_gateway else "stow"
    outcomes: list[StoreOutcome] = []
    # The parts of one request mostly share a patient, a study and a series: look each up once.
    gateway = scope.gateway_credential
    context = IngestContext(scope.institution, gateway_id=gateway.pk if gateway else None)

    def on_part(part: ReceivedPart) -> None:
        outcome = _store_part(part, context, via, study_uid)
        # The response and the audit need only the UIDs kept in `extra`, not the row with its
        # metadata (~20 KB each): memory stays flat however many parts a request has.
        outcome.instance = None
        outcomes.append(outcome)

    note, broken_status = "", 0
    try:
        read_parts(
            raw,  # type: ignore[arg-type]
            boundary=params["boundary"],
            spool_dir=Path(settings.HUB_SPOOL_DIR),
            part_limit=settings.HUB_MAX_INSTANCE_BYTES,
            body_limit=settings.HUB_MAX_STOW_BYTES,
            on_part=on_part,
        )
    except BodyTooLargeError as exc:
        note, broken_status = str(exc), 413
    except MultipartError as exc:
        note, broken_status = str(exc), 400
    finally:
        # The studies' counters, once per study for the whole request, before it answers.
        context.settle()
    if broken_status and not outcomes:
        return _plain(broken_status, note)
    ingest_audit(scope=scope, outcomes=outcomes, via=via, request=raw)
    base = raw.build_absolute_uri("/dicomweb").rstrip("/")
    return store_response(outcomes, base_url=base, note=note)


def _store_part(
    part: ReceivedPart, context: IngestContext, via: str, study_uid: str | None
) -> StoreOutcome:
    if part.content_type not in ("", "application/dicom"):
        return StoreOutcome(
            status="refused",
            reason=SOP_CLASS_NOT_SUPPORTED,
            message=_("A part of type %(type)s is not accepted.") % {"type": part.content_type},
        )
    if part.too_large:
        return StoreOutcome(
            status="refused",
            reason=TOO_LARGE,
            message=_("The part is larger than %(limit)s bytes.")
            % {"limit": settings.HUB_MAX_INSTANCE_BYTES},
        )
    try:
        # The part's file is ours (read_parts deletes it afterwards): local storage may move
        # it into place rather than copy it.
        return instance_store(
            institution=context.institution,
            path=part.path,
            sha256=part.sha256,
            dataset_sha256=part.dataset_sha256,
            via=via,
            expected_study_uid=study_uid,
            context=context,
            consume=True,
        )
    except Refusal as refusal:  # instance_store reports refusals itself; belt and braces
        return StoreOutcome(status="refused", reason=refusal.reason, message=refusal.message)
    except OSError:
        return StoreOutcome(
            status="refused",
            reason=OUT_OF_RESOURCES,
            message=_("Storage is not available; send again later."),
        )
    except ValueError:
        return StoreOutcome(
            status="refused", reason=CANNOT_UNDERSTAND, message=_("The part could not be read.")
        )


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
