"""A referral's life as an explicit state machine: the allowed steps, and nothing else.

    requested ─route→ routed ─claim→ claimed ─start→ reporting ─report→ reported
        │               ↑  ←release─┘   │                                  │
        │               └──reroute──────┘                              deliver
        │                                                                   ↓
        └─cancel→ cancelled    routed/claimed/reporting ─return→ returned   delivered
                                                                            │
                                                                 acknowledge ↓
                                                                       acknowledged

`transition()` is the only code that changes `Referral.status`. It must be called on a
row the caller has locked (`select_for_update`), checks the step is allowed from the
current status, applies it and records a `ReferralEvent` (who, when, why) in the same
transaction. A step that is not allowed raises `TransitionNotAllowedError` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from referrals.models import Referral, ReferralEvent
from referrals.models import ReferralStatus as S
from tenants.errors import ApplicationError
from tenants.models import Institution, User


@dataclass(frozen=True)
class Step:
    sources: frozenset[str]
    target: str | None  # None: the step records an event and keeps the status
    stamp: str | None = None  # the Referral field set to "now" by this step


def _step(sources: set[str], target: str | None, stamp: str | None = None) -> Step:
    return Step(frozenset(sources), target, stamp)


STEPS: dict[str, Step] = {
    "route": _step({S.REQUESTED}, S.ROUTED, "routed_at"),
    "reroute": _step({S.ROUTED, S.CLAIMED}, S.ROUTED, "routed_at"),
    "claim": _step({S.ROUTED}, S.CLAIMED, "claimed_at"),
    "open": _step({S.CLAIMED, S.REPORTING}, None),
    "release": _step({S.CLAIMED}, S.ROUTED),
    "start_report": _step({S.CLAIMED}, S.REPORTING),
    "report": _step({S.REPORTING}, S.REPORTED, "reported_at"),
    "deliver": _step({S.REPORTED}, S.DELIVERED, "delivered_at"),
    "acknowledge": _step({S.DELIVERED}, S.ACKNOWLEDGED, "acknowledged_at"),
    "return": _step({S.ROUTED, S.CLAIMED, S.REPORTING}, S.RETURNED),
    "cancel": _step({S.REQUESTED, S.ROUTED, S.CLAIMED}, S.CANCELLED),
    # Deadline steps: recorded, the status stays.
    "warn": _step({S.REQUESTED, S.ROUTED, S.CLAIMED, S.REPORTING}, None, "warned_at"),
    "breach": _step({S.REQUESTED, S.ROUTED, S.CLAIMED, S.REPORTING}, None, "breached_at"),
    "escalate": _step({S.REQUESTED, S.ROUTED, S.CLAIMED, S.REPORTING}, None),
}


class TransitionNotAllowedError(ApplicationError):
    """The step cannot happen from the referral's current status."""

    status_code = 409
    default_code = "not_allowed_now"

    def __init__(self, referral: Referral, action: str) -> None:
        self.referral = referral
        self.action = action
        super().__init__(
            _("This referral is %(status)s; it cannot be %(action)s now.")
            % {
                "status": referral.get_status_display(),
                "action": ACTION_LABELS.get(action, action),
            }
        )


ACTION_LABELS = {
    "create": _("requested"),
    "route": _("routed"),
    "reroute": _("re-routed"),
    "claim": _("claimed"),
    "open": _("opened"),
    "release": _("released"),
    "start_report": _("started reporting"),
    "report": _("reported"),
    "deliver": _("delivered"),
    "acknowledge": _("acknowledged"),
    "return": _("returned for quality"),
    "cancel": _("cancelled"),
    "warn": _("warned of its deadline"),
    "breach": _("past its deadline"),
    "escalate": _("escalated"),
}


def allowed_actions(referral: Referral) -> list[str]:
    return [name for name, step in STEPS.items() if referral.status in step.sources]


def transition(
    referral: Referral,
    action: str,
    *,
    actor: User | None = None,
    institution: Institution | None = None,
    reason: str = "",
    reason_steps: list[dict[str, Any]] | None = None,
    data: dict[str, Any] | None = None,
    at: Any = None,
    **fields: Any,
) -> ReferralEvent:
    """Apply `action` to the locked `referral` (plus `fields`) and record the event.

    `reason`: what a person wrote; `reason_steps`: why, when the hub decided (codes with
    parameters, put into words when the timeline is read)."""
    step = STEPS[action]
    if referral.status not in step.sources:
        raise TransitionNotAllowedError(referral, action)
    now = at or timezone.now()
    before = referral.status
    changed = set(fields)
    for name, value in fields.items():
        setattr(referral, name, value)
    if step.target is not None:
        referral.status = step.target
        changed.add("status")
    if step.stamp is not None:
        setattr(referral, step.stamp, now)
        changed.add(step.stamp)
    referral.save(update_fields=[*sorted(changed), "updated_at"])
    return ReferralEvent.objects.create(
        referral=referral,
        action=action,
        from_status=before,
        to_status=referral.status,
        actor=actor,
        actor_institution=institution,
        at=now,
        reason=reason,
        reason_steps=reason_steps or [],
        data=data or {},
    )
