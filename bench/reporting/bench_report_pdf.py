"""manage.py bench_report_pdf: time to make a final report's PDF with 4 key images.

Builds a throwaway world in one transaction that is rolled back at the end (images go to a
temporary folder): a clinic, a reading hospital, 4 stored CT slices, a final CT chest
report. Each round renders the 4 key images (referrals/archive/rendering.py) and lays out the PDF
with WeasyPrint; prints p50/p95 over --rounds.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from alliance.models import Alliance
from referrals.archive import rendering
from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import Instance, Referral, ReferralKind, Study
from reporting.models import Report, ReportStatus, ReportTemplate
from reporting.pdf import KEY_IMAGE_OPTIONS, report_pdf_bytes
from reporting.seed import templates_seed
from reporting.services import report_digest
from tenants.models import Institution, InstitutionKind, User


class _RollbackError(Exception):
    pass


def _report(folder: Path, size: int) -> tuple[Report, list[Instance]]:
    clinic = Institution.objects.create(
        code="bench-pdf-clinic",
        name="基准卫生院",
        kind=InstitutionKind.TOWNSHIP_CENTRE,
        region_code="110101",
    )
    reader = Institution.objects.create(
        code="bench-pdf-reader",
        name="基准中心医院",
        name_en="Bench Central Hospital",
        kind=InstitutionKind.CENTRAL_HOSPITAL,
        region_code="110101",
    )
    commission = Institution.objects.create(
        code="bench-pdf-commission",
        name="基准卫健委",
        kind=InstitutionKind.HEALTH_COMMISSION,
        region_code="110101",
    )
    alliance = Alliance.objects.create(
        code="bench-pdf",
        name="基准医联体",
        region_code="110101",
        lead_hospital=reader,
        commission=commission,
    )
    templates_seed(alliance=alliance)
    signer = User.objects.create(username="bench-pdf-signer", name="基准医师")
    patient = SyntheticPatient("BENCH-1", "Wang^Xiaoming=王^小明")
    for n, ds in enumerate(ct_series(patient=patient, count=4, size=size)):
        path = folder / f"{n}.dcm"
        path.write_bytes(to_bytes(ds))
        instance_store(institution=clinic, path=path, via="bench")
    study = Study.objects.get(institution=clinic, pid="BENCH-1")
    now = timezone.now()
    referral = Referral.objects.create(
        alliance=alliance,
        kind=ReferralKind.REMOTE_READ,
        study=study,
        source=clinic,
        target=reader,
        status="reported",
        deadline_at=now + dt.timedelta(hours=1),
        warn_at=now + dt.timedelta(minutes=45),
    )
    template = ReportTemplate.objects.get(alliance=alliance, code="ct-chest")
    report = Report(
        referral=referral,
        study=study,
        institution=reader,
        template=template,
        template_version=template.version,
        author=signer,
        status=ReportStatus.DRAFT,
        signed_by=signer,
        signed_at=now,
        content={
            "findings": "右上肺 6 mm 实性结节。" * 10,
            "lung_rads": "2",
            "impression": "良性表现。",
        },
    )
    report.save()
    # Signed in one UPDATE from draft to final, as the database allows it only once.
    Report.objects.filter(pk=report.pk).update(
        status=ReportStatus.FINAL, content_sha256=report_digest(report)
    )
    return Report.objects.get(pk=report.pk), list(Instance.objects.filter(study=study))


class Command(BaseCommand):
    help = "PDF generation time (p50/p95) of a final report with 4 key images."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--rounds", type=int, default=20)
        parser.add_argument("--size", type=int, default=512, help="CT slice side in pixels")

    def handle(self, *args: Any, **options: Any) -> None:
        rounds = max(1, options["rounds"])
        with tempfile.TemporaryDirectory() as folder:
            storage = {
                **settings.STORAGES,
                "default": {
                    "BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": folder},
                },
            }
            try:
                with override_settings(STORAGES=storage), transaction.atomic():
                    report, instances = _report(Path(folder), options["size"])
                    report_pdf_bytes(report, key_images=[])  # warm up fonts and imports
                    times, size = [], 0
                    for _ in range(rounds):
                        start = time.perf_counter()
                        pictures = [
                            rendering.frame_render(i, 1, KEY_IMAGE_OPTIONS) for i in instances
                        ]
                        size = len(report_pdf_bytes(report, key_images=pictures))
                        times.append((time.perf_counter() - start) * 1000)
                    raise _RollbackError
            except _RollbackError:
                pass
        times.sort()
        p50 = statistics.median(times)
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        self.stdout.write(
            f"report PDF with 4 key images ({options['size']}px CT): "
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms over {rounds} rounds; "
            f"{size / 1024:.0f} KiB"
        )
