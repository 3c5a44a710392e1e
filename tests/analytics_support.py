"""A small hand-checked world for the analytics tests, on the reading desk.

All on 2026-11-20 (Asia/Shanghai), from 09:00 local (01:00 UTC):
- chest: CT CHEST of P-1 (Wang^Xiaoming), rita drafts at +5 min, flags a critical finding at
  +20 (alice acknowledges at +30), signs preliminary at +60; sam's second read at +90 is a
  minor discrepancy and signs it final: turnaround 90 min.
- mr: MR KNEE of P-2, sam signs final at +30: turnaround 30 min. P-2 has an older DX CHEST
  at the reader hospital (2026-10-20), carried as a prior from another site.
- head: CT HEAD of P-3, rob claims it and returns it for a motion artefact at +10.
- stat: CT CHEST of P-4, STAT, routed and never claimed: breached at +31 (one escalation).
- P-1 again: CT CHEST at the clinic on 2026-11-25 (a repeat) and at the reader hospital on
  2026-11-27 (a repeat, cross-site). Neither is referred.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import rest_framework.throttling  # noqa: F401  loaded before any frozen clock (its timer)
from freezegun import freeze_time

from referrals.models import Referral
from referrals.workflow import services as referral_services
from reporting import critical
from reporting import services as reporting
from reporting.models import ReportTemplate

from .conftest import World
from .referral_support import study_at
from .reporting_support import CHEST, Desk, desk_make, scope

T0 = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
PATIENTS = {"P-1": "Wang^Xiaoming", "P-2": "Li^Hua", "P-3": "Zhao^Lei", "P-4": "Chen^Jing"}
ACCESSION_PREFIX = "ACC"


def at(minutes: int) -> freeze_time:
    return freeze_time(T0 + dt.timedelta(minutes=minutes))


@dataclass
class AnalyticsWorld:
    desk: Desk
    head: Referral
    stat: Referral


def analytics_world(world: World, capture) -> AnalyticsWorld:
    # P-2's older study at the reader hospital: the MR referral brings it as a prior. Stored
    # on its own day, like every row here: a row stamped with the real clock would look
    # "changed since the last refresh" to the frozen refreshes, on some dates and not others.
    with freeze_time(dt.datetime(2026, 10, 20, 2, 0, tzinfo=dt.UTC)):
        study_at(
            world.reader,
            modality="DX",
            body_part="CHEST",
            patient_id="R-2",
            patient_name=PATIENTS["P-2"],
            patient_key="key-p2",
            study_date="2026-10-20",
        )
    with at(0):
        desk = desk_make(world, capture)
        clinic = scope(world.alice, world.clinic)
        with capture(execute=True):
            head, _ = referral_services.referral_request(
                scope=clinic,
                study=study_at(
                    world.clinic,
                    body_part="HEAD",
                    patient_id="P-3",
                    patient_name=PATIENTS["P-3"],
                    patient_key="key-p3",
                    study_date="2026-11-20",
                ),
            )
            stat, _ = referral_services.referral_request(
                scope=clinic,
                priority="stat",
                study=study_at(
                    world.clinic,
                    patient_id="P-4",
                    patient_name=PATIENTS["P-4"],
                    patient_key="key-p4",
                    study_date="2026-11-20",
                ),
            )
        with capture(execute=True):
            referral_services.referral_claim(scope=desk.rob(), referral_id=head.pk)
    mr_knee = ReportTemplate.objects.get(pk=desk.mr_knee.pk)
    with at(5):
        chest = reporting.report_create(
            scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
        )
        chest = reporting.report_autosave(
            scope=desk.rita(), report_id=chest.pk, version=chest.version, content=CHEST
        )
        mr = reporting.report_create(
            scope=desk.sam(), referral_id=desk.mr.pk, template_id=mr_knee.pk
        )
        mr = reporting.report_autosave(
            scope=desk.sam(),
            report_id=mr.pk,
            version=mr.version,
            content={"findings": "ACL intact.", "impression": "Normal."},
        )
    with at(10), capture(execute=True):
        referral_services.referral_return(
            scope=desk.rob(), referral_id=head.pk, reason="motion_artefact"
        )
    with at(20), capture(execute=True):
        finding = critical.critical_flag(
            scope=desk.rita(), referral_id=desk.chest.pk, text="Tension pneumothorax"
        )
    with at(30), capture(execute=True):
        critical.critical_acknowledge(scope=desk.alice(), finding_id=finding.pk)
        reporting.report_sign(scope=desk.sam(), report_id=mr.pk, kind="final", version=mr.version)
    with at(31), capture(execute=True):
        referral_services.referrals_sweep()
    with at(60), capture(execute=True):
        chest = reporting.report_sign(
            scope=desk.rita(), report_id=chest.pk, kind="preliminary", version=chest.version
        )
    with at(90), capture(execute=True):
        reporting.report_second_read(
            scope=desk.sam(),
            report_id=chest.pk,
            outcome="minor_discrepancy",
            comment="6 mm, not 5 mm",
            version=chest.version,
        )
    with at(5 * 24 * 60):
        study_at(
            world.clinic,
            patient_id="P-1",
            patient_name=PATIENTS["P-1"],
            patient_key="key-p1",
            study_date="2026-11-25",
        )
    with at(7 * 24 * 60):
        study_at(
            world.reader,
            patient_id="R-1",
            patient_name=PATIENTS["P-1"],
            patient_key="key-p1",
            study_date="2026-11-27",
        )
    head.refresh_from_db()
    stat.refresh_from_db()
    return AnalyticsWorld(desk=desk, head=head, stat=stat)
