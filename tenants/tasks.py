"""Celery tasks of the tenants app: thin, idempotent, each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.utils import translation
from django.utils.translation import gettext as _

from .models import Membership
from .services import notification_send


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def membership_notice_send(membership_id: int) -> None:
    """Tell a user about a role they were granted (once, however often this runs)."""
    membership = (
        Membership.objects.select_related("user", "institution")
        .filter(pk=membership_id, revoked_at__isnull=True)
        .first()
    )
    if membership is None:
        return
    with translation.override(membership.user.language):
        title = _("You are now %(role)s at %(institution)s") % {
            "role": membership.get_role_display(),
            "institution": membership.institution.display_name,
        }
    notification_send(
        user=membership.user,
        institution=membership.institution,
        kind="membership_granted",
        title=title,
        link="/",
        dedup_key=f"membership:{membership.pk}",
    )
