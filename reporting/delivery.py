"""Live delivery: when a report is signed final, the clinic's open pages hear of it at once.

The event goes out after the signing transaction commits (tenants.live.publish), to the
source site's group (its referral pages) and the reading site's. The referral's own
"referral" event (referrals.workflow.notify.broadcast, sent by referral_reported) makes the clinic's
referral page redraw; this "report" event is for API clients and the report panel.
"""

from __future__ import annotations

from typing import Any

from tenants.live import institution_group, publish

from .models import Report


def report_payload(report: Report) -> dict[str, Any]:
    """No patient identity and no content: listeners fetch the report through the API."""
    return {
        "id": report.pk,
        "referral": report.referral_id,
        "status": report.status,
        "signed_at": report.signed_at.isoformat() if report.signed_at else None,
        "sha256": report.content_sha256,
    }


def report_announce(report: Report) -> None:
    payload = report_payload(report)
    publish(institution_group(report.referral.source_id), "report", payload)
    if report.institution_id != report.referral.source_id:
        publish(institution_group(report.institution_id), "report", payload)
