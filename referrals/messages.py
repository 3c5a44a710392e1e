"""The referrals' message codes: notifications about a case, and the lines of a routing
explanation or timeline note, put into words when read (tenants/messages.py)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from alliance.models import BreachAction, ReaderPool, Tier
from referrals.archive.person_names import dicom_person_name
from referrals.models import CorrectionKind, Priority, ReferralKind, ReturnReason
from tenants.messages import (
    MessageTemplate,
    Text,
    name,
    register_choices,
    register_formatter,
    register_messages,
)

TEXT = "%(text)s"  # a body that is only the words a person typed

NOTIFICATIONS = {
    "referral.assigned": MessageTemplate(_("A new case is on your worklist"), "%(explanation)s"),
    "referral.unroutable": MessageTemplate(_("A case matched no routing rule"), "%(explanation)s"),
    "referral.returned": MessageTemplate(
        _("A study was returned for quality"), "%(reason)s. %(comment)s"
    ),
    "referral.cancelled": MessageTemplate(_("A case you hold was cancelled by the site"), TEXT),
    "referral.reported": MessageTemplate(_("A report is ready")),
    "referral.warning": MessageTemplate(_("A case nears its deadline")),
    "referral.breach": MessageTemplate(_("A case is past its deadline"), "%(done)s"),
    "archive.held": MessageTemplate(
        _("Instances held for review"),
        ngettext_lazy(
            "%(n)d instance of study %(study)s was held: its patient contradicts what the "
            "archive holds. Decide on the Held instances page.",
            "%(n)d instances of study %(study)s were held: their patient contradicts what the "
            "archive holds. Decide on the Held instances page.",
            "n",
        ),
    ),
    "archive.conflict": MessageTemplate(
        _("A different data set was refused"),
        ngettext_lazy(
            "%(n)d instance of study %(study)s was refused: another data set is stored under "
            "its SOP Instance UID. The stored copy was kept.",
            "%(n)d instances of study %(study)s were refused: other data sets are stored "
            "under their SOP Instance UIDs. The stored copies were kept.",
            "n",
        ),
    ),
    "study.corrected": MessageTemplate(
        _("A study of your case was corrected"), _("%(what)s (accession %(accession)s): %(text)s")
    ),
}

# The lines of a routing explanation and of timeline notes the hub writes itself.
STEPS: dict[str, Text] = {
    "routing.case": _("%(what)s from tier %(tier)s"),
    "routing.study": _("study"),
    "routing.rule": _("rule %(order)d (%(name)s): %(case)s → %(pool)s"),
    "routing.passed_over": _("%(pool)s passed over → %(next)s"),
    "routing.overflow": _("%(pool)s at its cap (%(load)d ≥ %(cap)d) → overflow to %(next)s"),
    "routing.no_fallback": _("no rule matches %(case)s and the alliance has no fallback pool"),
    "routing.fallback": _("no rule matches %(case)s → fallback %(pool)s"),
    "routing.no_reader": _("no reader on duty; left in the pool"),
    "routing.on_duty": ngettext_lazy("%(n)d reader on duty", "%(n)d readers on duty", "n"),
    "routing.all_at_capacity": _("%(duty)s, all at capacity; left in the pool"),
    "routing.chose": _("%(duty)s; chose %(name)s with %(open)d open of %(cap)d"),
    "routing.escalated": _("→ %(pool)s: %(why)s"),
    "routing.moved_to": _("moved to %(pool)s"),
    "routing.claim_not_opened": _("claim not opened in time"),
    "routing.breach_action": "%(action)s",
    "correction.done": _("%(what)s: %(text)s"),
}


def pool_name(pool: ReaderPool | None) -> dict[str, Any] | str:
    return "" if pool is None else name(pool.name, pool.name_en)


def register() -> None:
    register_choices(
        {
            "tier": Tier,
            "priority": Priority,
            "referral_kind": ReferralKind,
            "return_reason": ReturnReason,
            "breach_action": BreachAction,
            "correction_kind": CorrectionKind,
        }
    )
    register_formatter("pn", dicom_person_name)
    register_messages(NOTIFICATIONS)
    register_messages(STEPS)
