"""Celery tasks of the imaging side: the "study stable" sweep and the work after it.

Thin by design: each task takes ids, re-fetches, and calls one service. Hooks are safe to
run twice (a redelivered message, a repeated stable event) and skip stale generations.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from referrals.archive.stability import (
    studies_hooks_redeliver,
    studies_mark_stable,
    study_stable_hook,
    study_still_stable,
)
from referrals.models import Series

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def studies_stable_sweep() -> int:
    """Beat sends this every HUB_STABLE_SWEEP_SECONDS: mark quiet studies stable, and queue
    again the hooks of stable studies whose hook task was lost."""
    marked = len(studies_mark_stable())
    studies_hooks_redeliver()
    return marked


@study_stable_hook
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def series_thumbnails_build(study_id: int, generation: str) -> int:
    """Render each series' thumbnail once the study is complete; returns how many exist."""
    from referrals.archive.rendering import RenderError, series_thumbnail_ensure

    study = study_still_stable(study_id, generation)
    if study is None:
        return 0
    built = 0
    for series in Series.objects.filter(study=study).order_by("pk"):
        try:
            built += bool(series_thumbnail_ensure(series))
        except RenderError as exc:  # an image we cannot decode: the viewer says so itself
            logger.warning("No thumbnail for series %s: %s", series.pk, exc)
    return built


# --- Referrals ---------------------------------------------------------------------------------


@study_stable_hook
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def referral_request_when_stable(study_id: int, generation: str) -> int | None:
    """A site set to "request a remote read when a study is complete" gets one, once."""
    from referrals.workflow.services import referral_request_automatic

    if study_still_stable(study_id, generation) is None:
        return None
    referral = referral_request_automatic(study_id)
    return referral.pk if referral else None


@shared_task(
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def referral_route_task(referral_id: int) -> str | None:
    """Route one referral; a repeat (redelivery, the sweep's re-drive) finds it routed."""
    from referrals.workflow.services import referral_route

    referral = referral_route(referral_id)
    return referral.status if referral else None


@shared_task(ignore_result=True)
def referrals_sweep() -> dict[str, int]:
    """Beat sends this every HUB_REFERRAL_SWEEP_SECONDS: deadlines, stale claims, re-drive."""
    from referrals.workflow.services import referrals_sweep as sweep

    return sweep()


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def correction_run_task(correction_id: int) -> str:
    """Rewrite a correction's objects and switch the index; safe to run again."""
    from referrals.archive.correction.services import correction_run

    correction = correction_run(correction_id=correction_id)
    return correction.status if correction is not None else "missing"


# --- Registration at the source ------------------------------------------------------------------


@study_stable_hook
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def registration_match_when_stable(study_id: int, generation: str) -> int | None:
    """A study that arrives for a registered exam completes it (and is linked to it)."""
    from referrals.registration.services import registration_match_study

    if study_still_stable(study_id, generation) is None:
        return None
    registration = registration_match_study(study_id=study_id)
    return registration.pk if registration else None


# --- Patient identity across the alliance -------------------------------------------------------


@study_stable_hook
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def patient_identity_when_stable(study_id: int, generation: str) -> int | None:
    """Link the study's patient record within the alliance once its study is complete."""
    from referrals.identity.services import patient_identity_refresh

    study = study_still_stable(study_id, generation)
    if study is None:
        return None
    return patient_identity_refresh(patient_id=study.patient_id)
