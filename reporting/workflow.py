"""A report's life as an explicit state machine: the allowed steps, and nothing else.

    draft ─sign_preliminary (a senior's wet read)→ preliminary ─sign_final→ final
      │  └─request_second_read (a junior signs preliminary)→ second_read
      └─sign_final (a senior, the author)→ final          │
                                   second_read ─agree / minor_discrepancy→ final
                                   second_read ─major_discrepancy→ draft (back to the author)
                                   second_read ─second_read_edit→ second_read (the senior
                                                 corrects the text before co-signing)
    draft ─edit→ draft            final ─addendum→ final (the only later word)

The state is derived from two stored fields: `status` and, for a preliminary report,
`second_read_required` ("second_read" = preliminary and waiting for a senior). `transition()`
checks that a step is allowed from the report's current state and sets both fields; the
services (reporting/services.py) call it on a row they hold locked, then save it and record
what else the step means (signature, SHA-256, SecondRead, audit, delivery). A step that is
not allowed raises `ReportTransitionError` (409, with a code saying why) and changes nothing.
Who may take a step (author, role, institution) is the services' business, not this table's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from .models import Report, ReportStatus


class ReportState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    PRELIMINARY = "preliminary", _("Preliminary")
    SECOND_READ = "second_read", _("Waiting for its second read")
    FINAL = "final", _("Final")


S = ReportState

# What each state is in the stored fields (status, second_read_required); None: unchanged.
STORED: dict[str, tuple[str, bool | None]] = {
    S.DRAFT: (ReportStatus.DRAFT, None),
    S.PRELIMINARY: (ReportStatus.PRELIMINARY, False),
    S.SECOND_READ: (ReportStatus.PRELIMINARY, True),
    S.FINAL: (ReportStatus.FINAL, False),
}


@dataclass(frozen=True)
class Step:
    sources: frozenset[str]
    target: str | None  # None: the step keeps the state
    refusal: str  # the error code when the state does not allow the step
    message: Any


def _step(sources: set[str], target: str | None, refusal: str, message: Any) -> Step:
    return Step(frozenset(sources), target, refusal, message)


_SIGNED_PRELIMINARY = _("This report is already signed preliminary.")
_NO_SECOND_READ = _("This report does not wait for a second read.")

STEPS: dict[str, Step] = {
    "edit": _step(
        {S.DRAFT},
        None,
        "not_draft",
        _(
            "This report is signed preliminary and waits for its second read; it "
            "cannot be edited now."
        ),
    ),
    "sign_preliminary": _step({S.DRAFT}, S.PRELIMINARY, "already_signed", _SIGNED_PRELIMINARY),
    "request_second_read": _step({S.DRAFT}, S.SECOND_READ, "already_signed", _SIGNED_PRELIMINARY),
    "sign_final": _step(
        {S.DRAFT, S.PRELIMINARY},
        S.FINAL,
        "second_read_pending",
        _("This report waits for its second read."),
    ),
    "second_read_edit": _step({S.SECOND_READ}, None, "no_second_read_pending", _NO_SECOND_READ),
    "agree": _step({S.SECOND_READ}, S.FINAL, "no_second_read_pending", _NO_SECOND_READ),
    "minor_discrepancy": _step({S.SECOND_READ}, S.FINAL, "no_second_read_pending", _NO_SECOND_READ),
    "major_discrepancy": _step({S.SECOND_READ}, S.DRAFT, "no_second_read_pending", _NO_SECOND_READ),
    "addendum": _step(
        {S.FINAL}, None, "not_final", _("Only a final report takes addenda; edit the draft.")
    ),
}

SIGN_STEPS = frozenset({"sign_preliminary", "request_second_read", "sign_final"})


class ReportTransitionError(Exception):
    """The step cannot happen from the report's current state (a 409 for the API)."""

    def __init__(self, report: Report, action: str) -> None:
        state = state_of(report)
        if state == S.FINAL and action in SIGN_STEPS:
            code, message = "already_signed", _("This report is already signed final.")
        elif state == S.FINAL and action != "addendum":
            code, message = "report_final", _("This report is final; add an addendum instead.")
        else:
            code, message = STEPS[action].refusal, STEPS[action].message
        super().__init__(str(message))
        self.report = report
        self.action = action
        self.state = state
        self.code = code


def state_of(report: Report) -> str:
    if report.status == ReportStatus.PRELIMINARY:
        return S.SECOND_READ if report.second_read_required else S.PRELIMINARY
    return str(ReportState(report.status))


def allowed_actions(report: Report) -> list[str]:
    state = state_of(report)
    return [name for name, step in STEPS.items() if state in step.sources]


def require(report: Report, action: str) -> None:
    """Refuse `action` (ReportTransitionError) unless the report's state allows it."""
    if state_of(report) not in STEPS[action].sources:
        raise ReportTransitionError(report, action)


def transition(report: Report, action: str) -> str:
    """Check and apply `action` to the locked `report` in memory; returns the state before.

    The caller saves the row (with whatever else the step sets) in the same transaction.
    """
    require(report, action)
    before = state_of(report)
    target = STEPS[action].target
    if target is not None:
        status, second_read = STORED[target]
        report.status = status
        if second_read is not None:
            report.second_read_required = second_read
    return before
