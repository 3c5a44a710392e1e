"""Reads about users, memberships and notifications."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Membership, Notification, User


def notification_unread_count(*, user: User | int) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.active()
        .filter(user=user)
        .select_related("institution")
        .order_by("institution__code", "role")
    )
