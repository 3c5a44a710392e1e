"""manage.py bench_report_delivery: time from "sign" (the sign API call returns) to "visible
to the clinic", over N signs, through a real uvicorn, Redis channel layer and Celery worker.

Two clocks per sign, both started when the reader's POST .../sign/ returns:
- event: the clinic's websocket (/ws/referrals/, acting for the clinic) receives the
  "report" event of that report;
- fetch: the clinic's GET /api/v1/reports/?referral=N shows the report final (polled).
The goal of report delivery: p95 under 1 s.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from alliance.models import Alliance, AllianceMember, AlliancePolicy, PoolMember, ReaderPool, Tier
from bench.harness.command import BenchCommand
from bench.harness.processes import BenchError, child_env, http, start, start_uvicorn
from bench.harness.timing import percentile
from bench.scale.run import token_for
from referrals.models import Patient, Referral, Study
from referrals.workflow import services as referral_services
from reporting import services
from reporting.models import ReportTemplate
from reporting.seed import templates_seed
from tenants import access
from tenants.models import Institution, InstitutionKind, Membership, Role, User

GOAL_MS = 1000.0
CONTENT = {
    "menisci": "内侧半月板后角撕裂",
    "ligaments": "完整",
    "cartilage": "未见异常",
    "findings": "内侧半月板后角线状高信号达关节面。",
    "impression": "内侧半月板撕裂。",
}


Draft = tuple[Referral, int, int]  # referral, report id, report version


def _world(tag: str, cases: int) -> tuple[Institution, User, User, list[Draft]]:
    """A small alliance of its own: a clinic, a reading hospital, a senior reader, and
    `cases` claimed MR knee referrals with complete drafts (report id, version)."""
    reader_site = Institution.objects.create(
        code=f"{tag}-read",
        name=f"{tag} 读片中心",
        name_en=f"{tag} reading",
        kind=InstitutionKind.CENTRAL_HOSPITAL,
    )
    clinic = Institution.objects.create(
        code=f"{tag}-clinic",
        name=f"{tag} 卫生院",
        name_en=f"{tag} clinic",
        kind=InstitutionKind.TOWNSHIP_CENTRE,
    )
    commission = Institution.objects.create(
        code=f"{tag}-hc", name=f"{tag} 卫健委", kind=InstitutionKind.HEALTH_COMMISSION
    )
    alliance = Alliance.objects.create(
        code=tag, name=tag, name_en=tag, lead_hospital=reader_site, commission=commission
    )
    AllianceMember.objects.create(alliance=alliance, institution=reader_site, tier=Tier.CENTRAL)
    AllianceMember.objects.create(alliance=alliance, institution=clinic, tier=Tier.GRASSROOTS)
    tech = User.objects.create(username=f"{tag}-tech", name="技师", name_en="Tech")
    senior = User.objects.create(username=f"{tag}-senior", name="主任", name_en="Senior")
    Membership.objects.create(user=tech, institution=clinic, role=Role.CLINIC_TECHNICIAN)
    Membership.objects.create(user=senior, institution=reader_site, role=Role.SENIOR_RADIOLOGIST)
    pool = ReaderPool.objects.create(alliance=alliance, institution=reader_site, name=tag)
    PoolMember.objects.create(pool=pool, user=senior, capacity=cases + 5)
    AlliancePolicy.objects.create(alliance=alliance, fallback_pool=pool)
    templates_seed(alliance=alliance)
    template = ReportTemplate.objects.get(alliance=alliance, code="mr-knee")
    clinic_scope = access.scope_for_user(tech, institution_id=clinic.pk)
    reader_scope = access.scope_for_user(senior, institution_id=reader_site.pk)
    drafts = []
    for n in range(cases):
        patient = Patient.objects.create(
            institution=clinic,
            patient_id=f"{tag}-{n}",
            name="Bench^Patient",
            patient_key=f"{tag}-{n}",
        )
        study = Study.objects.create(
            institution=clinic,
            patient=patient,
            study_uid=f"2.25.{uuid.uuid4().int}",
            modalities="MR",
            body_parts="KNEE",
            pid=patient.patient_id,
            patient_name=patient.name,
            patient_key=patient.patient_key,
        )
        referral, _ = referral_services.referral_request(scope=clinic_scope, study=study)
        referral_services.referral_route(referral.pk)
        referral_services.referral_claim(scope=reader_scope, referral_id=referral.pk)
        report = services.report_create(
            scope=reader_scope, referral_id=referral.pk, template_id=template.pk
        )
        report = services.report_autosave(
            scope=reader_scope, report_id=report.pk, version=report.version, content=CONTENT
        )
        drafts.append((referral, report.pk, report.version))
    return clinic, tech, senior, drafts


def _listen(ws: Any, heard: dict[int, float]) -> None:
    """The clinic's socket: note when each report event arrives."""
    try:
        for raw in ws:
            message = json.loads(raw)
            if message.get("event") == "report":
                heard.setdefault(message["payload"]["id"], time.perf_counter())
    except Exception:  # the socket closes at the end of the run
        return


class Command(BenchCommand):
    help = __doc__

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--signs", type=int, default=40, help="reports signed (N)")

    def run(self, **options: Any) -> None:
        count = max(1, options["signs"])
        tag = f"bench-rd-{uuid.uuid4().hex[:8]}"
        self.say(f"making {count} claimed cases with complete drafts ({tag}) ...")
        clinic, tech, senior, drafts = _world(tag, count)
        web = start_uvicorn(workers=1, log_dir=self.log_dir)
        celery = str(Path(sys.executable).with_name("celery"))
        worker = start(
            "worker",
            [
                celery,
                "-A",
                "alliance",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
            ],
            env=child_env(),
            log_dir=self.log_dir,
        )
        event_ms: list[float] = []
        fetch_ms: list[float] = []
        heard: dict[int, float] = {}  # report id -> when the clinic's socket heard it
        try:
            base = web.base_url
            ws_url = base.replace("http://", "ws://") + "/ws/referrals/"
            reader = http()
            reader.headers.update(
                {"Authorization": f"Token {token_for(senior)}", "Accept-Language": "en"}
            )
            clinic_http = http()
            clinic_http.headers.update(
                {"Authorization": f"Token {token_for(tech)}", "X-Institution": str(clinic.pk)}
            )
            with connect(
                ws_url,
                additional_headers={
                    "Authorization": f"Token {token_for(tech)}",
                    "Origin": base,
                    "X-Institution": str(clinic.pk),
                },
                proxy=None,
                open_timeout=10,
            ) as ws:
                if json.loads(ws.recv(timeout=10))["event"] != "hello":
                    raise BenchError("the clinic's socket did not say hello")
                listener = threading.Thread(target=_listen, args=(ws, heard), daemon=True)
                listener.start()
                for referral, report_id, version in drafts:
                    answer = reader.post(
                        f"{base}/api/v1/reports/{report_id}/sign/",
                        json={"kind": "final", "version": version},
                        timeout=30,
                    )
                    signed = time.perf_counter()
                    if answer.status_code != 200:
                        raise BenchError(f"sign answered {answer.status_code}: {answer.text[:300]}")
                    fetch_ms.append(self._fetch(clinic_http, base, referral.pk, signed))
                    event_ms.append(self._event(heard, report_id, signed))
        finally:
            worker.stop()
            web.stop()
        self.say(f"{tag}: its final reports stay (they are immutable); use a bench database")
        self.say(
            "event < 0 ms: the clinic's socket heard the report before the sign answer "
            "reached the reader (the event goes out at commit)"
        )
        for name, values in (("event", event_ms), ("fetch", fetch_ms)):
            p50, p95 = percentile(values, 50), percentile(values, 95)
            self.out.line(f"FIGURE report_delivery_{name}_p50 = {p50:.1f} ms")
            self.out.line(
                f"FIGURE report_delivery_{name}_p95 = {p95:.1f} ms "
                f"(goal < {GOAL_MS:.0f} ms; n={len(values)}, max {max(values):.1f})"
            )

    @staticmethod
    def _event(heard: dict[int, float], report_id: int, signed: float) -> float:
        deadline = time.perf_counter() + 30
        while report_id not in heard:
            if time.perf_counter() > deadline:
                raise BenchError(f"no report event for report {report_id} within 30 s")
            time.sleep(0.002)
        return (heard[report_id] - signed) * 1000

    @staticmethod
    def _fetch(session: Any, base: str, referral_id: int, signed: float) -> float:
        while time.perf_counter() < signed + 30:
            rows = (
                session.get(f"{base}/api/v1/reports/?referral={referral_id}", timeout=10)
                .json()
                .get("results", [])
            )
            if rows and rows[0]["status"] == "final":
                return (time.perf_counter() - signed) * 1000
            time.sleep(0.005)
        raise BenchError(f"the clinic did not see report of referral {referral_id} in 30 s")
