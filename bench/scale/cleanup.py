"""Undo what a benchmark run added to the scale world, so the next run finds it unchanged."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse

from referrals.models import Referral, StudyGrant
from tenants.models import Notification


@transaction.atomic
def referrals_purge(referrals: QuerySet[Referral]) -> int:
    """Delete these referrals with their events, carried studies, grants and notifications."""
    ids = list(referrals.values_list("pk", flat=True))
    links = [reverse("referral-detail", args=[pk]) for pk in ids]
    Notification.objects.filter(link__in=links).delete()
    StudyGrant.objects.filter(source=StudyGrant.Source.REFERRAL, source_id__in=ids).delete()
    Referral.objects.filter(pk__in=ids).delete()  # events and carried studies cascade
    return len(ids)
