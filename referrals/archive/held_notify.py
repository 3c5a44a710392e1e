"""Tell the people who decide that something waits in the reconciliation queue.

When instances are held (or a different data set is refused as a conflict), each person who
may resolve the site's queue (tenants/roles.py ARCHIVE_MANAGE_ROLES) gets an in-app
notification linking to the Held instances page. At most one per study and hour: a CT series
of 300 held slices, sent in many requests, is one notice, not 300.
"""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import timezone

from tenants.models import Institution, Membership, Notification, User
from tenants.roles import ARCHIVE_MANAGE_ROLES
from tenants.services import notification_send

KIND = "archive_held"
HELD = "archive.held"
CONFLICT = "archive.conflict"
QUIET = dt.timedelta(hours=1)


def held_notification_send(
    *, institution: Institution, study_uid: str, code: str, count: int
) -> int:
    """Notify the site's deciders about `count` instances of `study_uid`; how many were told
    (0 when they were told about this study within the hour)."""
    now = timezone.now()
    prefix = f"held:{institution.pk}:{study_uid}:"
    recent = Notification.objects.filter(
        kind=KIND,
        institution=institution,
        created_at__gte=now - QUIET,
        dedup_key__startswith=prefix,
    )
    if recent.exists():
        return 0
    deciders = Membership.objects.active().filter(
        institution=institution, role__in=list(ARCHIVE_MANAGE_ROLES)
    )
    users = User.objects.filter(is_active=True, pk__in=deciders.values("user_id")).order_by("pk")
    # The hour's number in the key makes two requests arriving together send one notice.
    dedup_key = f"{prefix}{int(now.timestamp() // QUIET.total_seconds())}"
    told = 0
    for user in users:
        notification_send(
            user=user,
            kind=KIND,
            code=code,
            params={"n": count, "study": study_uid},
            link=reverse("held-list"),
            institution=institution,
            dedup_key=dedup_key,
        )
        told += 1
    return told
