"""manage.py bench_wado: WADO-RS rendered frames and frames of a 512x512 CT slice through
uvicorn (p50/p95), and the time to the first image of a study, cold, as a browser sees it."""

from __future__ import annotations

import logging
import os
import time
from argparse import ArgumentParser
from typing import Any

from django.test import Client

from bench.archive.corpus import ct_corpus
from bench.archive.stow_client import stow_send
from bench.harness.command import BenchCommand
from bench.harness.processes import BenchError, Service, http, start_uvicorn
from bench.harness.profile import PySpy, summarise
from bench.harness.sites import BenchSite
from bench.harness.timing import Timings
from referrals.models import Instance, Study

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDERED_GOAL_MS = 100.0
FIRST_IMAGE_GOAL_MS = 1000.0

# Runs in the page: when the viewer drew its first image, and when that image's bytes had
# arrived (Resource Timing), both in ms since the navigation started.
FIRST_IMAGE_JS = """() => {
  const shown = document.getElementById('viewer').dataset.shownUrl;
  const entries = performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/rendered'));
  return {shown: shown, drawnAt: performance.now(),
          receivedAt: entries.length ? entries[0].responseEnd : null,
          requestedAt: entries.length ? entries[0].startTime : null,
          pageAt: performance.getEntriesByType('navigation')[0].responseEnd,
          rendered: entries.length};
}"""


class Command(BenchCommand):
    help = (
        "Rendered frame and frame p50/p95 of a 512x512 CT slice, and the time to the first "
        "image of a study (browser, cold cache; and a DICOMweb client's requests)."
    )

    def add_bench_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--slices", type=int, default=250, help="slices in the study")
        parser.add_argument("--size", type=int, default=512)
        parser.add_argument("--repeat", type=int, default=200, help="requests per resource")
        parser.add_argument(
            "--first-image-runs", type=int, default=15, help="cold loads of the study page"
        )
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument(
            "--no-browser",
            action="store_true",
            help="skip the browser measurement (smoke tests only)",
        )
        parser.add_argument(
            "--profile",
            action="store_true",
            help="record the hub's workers with py-spy during rendered frames",
        )

    def run(self, **options: Any) -> None:
        files = ct_corpus(
            studies=1, per_study=options["slices"], size=options["size"], say=self.say
        )
        site = self.new_site("bench-wado")
        uvicorn = start_uvicorn(workers=options["workers"], log_dir=self.log_dir)
        try:
            stored = stow_send(
                f"{uvicorn.base_url}/dicomweb/studies",
                files,
                batch=10,
                clients=2,
                headers=site.auth_header,
            )
            if stored.instances != len(files):
                raise BenchError(
                    f"only {stored.instances} of {len(files)} instances stored: {stored.errors}"
                )
            study = Study.objects.get(institution=site.institution)
            self.say(
                f"study: {len(files)} slices {options['size']}x{options['size']} stored "
                f"for site {site.institution.code}; {options['repeat']} requests per "
                "resource, one client, each slice asked once before any is asked again"
            )
            self.pixels(uvicorn, site, study, options)
            self.first_image_dicomweb(uvicorn, site, study, options)
            if not options["no_browser"]:
                self.first_image_browser(uvicorn, site, study, options)
        finally:
            uvicorn.stop()

    def instance_urls(self, base: str, study: Study) -> list[str]:
        rows = (
            Instance.objects.filter(study=study)
            .select_related("series")
            .order_by("instance_number")
        )
        return [
            f"{base}/dicomweb/studies/{study.study_uid}/series/{i.series.series_uid}"
            f"/instances/{i.sop_uid}"
            for i in rows
        ]

    def pixels(
        self, uvicorn: Service, site: BenchSite, study: Study, options: dict[str, Any]
    ) -> None:
        session = http()
        urls = self.instance_urls(uvicorn.base_url, study)
        resources = {
            "rendered": ("/frames/1/rendered", "image/jpeg"),
            "frames": (
                "/frames/1",
                'multipart/related; type="application/octet-stream"; transfer-syntax=*',
            ),
        }
        for name, (suffix, accept) in resources.items():
            timings = Timings(name)
            headers = {**site.auth_header, "Accept": accept}
            for url in urls[:3]:  # warm both workers
                session.get(url + suffix, headers=headers, timeout=60)

            def one(
                index: int,
                suffix: str = suffix,
                headers: dict[str, str] = headers,
                timings: Timings = timings,
            ) -> None:
                response = timings.measure(
                    lambda: session.get(
                        urls[index % len(urls)] + suffix, headers=headers, timeout=60
                    )
                )
                if response.status_code != 200:
                    timings.failures += 1

            if options["profile"] and name == "rendered":
                with PySpy(uvicorn.pid, self.log_dir / "wado-rendered.pyspy.txt"):
                    for index in range(options["repeat"]):
                        one(index)
                self.say(
                    "profile of the hub's workers during rendered frames:\n"
                    + summarise(self.log_dir / "wado-rendered.pyspy.txt")
                )
            else:
                for index in range(options["repeat"]):
                    one(index)
            self.say(f"  {name}: {timings.summary()}")
            self.out.figure(f"wado.{name}.p50_ms", timings.p(50), "ms")
            self.out.figure(f"wado.{name}.p95_ms", timings.p(95), "ms")
            if name == "rendered":
                self.out.goal(
                    f"rendered slice p95 < {RENDERED_GOAL_MS:.0f} ms",
                    timings.p(95) < RENDERED_GOAL_MS,
                    f"{timings.p(95):.1f} ms",
                )

    def first_image_dicomweb(
        self, uvicorn: Service, site: BenchSite, study: Study, options: dict[str, Any]
    ) -> None:
        """A DICOMweb viewer's path (OHIF-like): the study's series, the first series'
        metadata, then the first slice rendered; a new connection each time (cold)."""
        timings = Timings("first image (DICOMweb client)")
        root = f"{uvicorn.base_url}/dicomweb/studies/{study.study_uid}"
        json_headers = {**site.auth_header, "Accept": "application/dicom+json"}
        for _ in range(options["first_image_runs"]):
            session = http()
            start = time.perf_counter()
            series = session.get(f"{root}/series", headers=json_headers, timeout=60).json()
            series_uid = series[0]["0020000E"]["Value"][0]
            metadata = session.get(
                f"{root}/series/{series_uid}/metadata", headers=json_headers, timeout=60
            ).json()
            first = min(metadata, key=lambda m: int(m.get("00200013", {}).get("Value", [0])[0]))
            sop_uid = first["00080018"]["Value"][0]
            image = session.get(
                f"{root}/series/{series_uid}/instances/{sop_uid}/frames/1/rendered",
                headers={**site.auth_header, "Accept": "image/jpeg"},
                timeout=60,
            )
            timings.seconds.append(time.perf_counter() - start)
            if image.status_code != 200:
                timings.failures += 1
            session.close()
        self.say(
            f"  first image, DICOMweb client (series, series metadata of "
            f"{len(metadata)} instances, rendered): {timings.summary()}"
        )
        self.out.figure("wado.first_image_dicomweb.p50_ms", timings.p(50), "ms")
        self.out.figure("wado.first_image_dicomweb.p95_ms", timings.p(95), "ms")

    def first_image_browser(
        self, uvicorn: Service, site: BenchSite, study: Study, options: dict[str, Any]
    ) -> None:
        """The study page in Chromium, a fresh profile each time (cold cache): from the
        navigation's start to the first rendered slice received, and to it drawn."""
        from playwright.sync_api import sync_playwright

        if not os.path.exists(CHROMIUM):
            raise BenchError(f"{CHROMIUM} is missing: apt-get install chromium")
        client = Client()
        logging.getLogger("axes").setLevel(logging.WARNING)  # one line per login otherwise
        client.force_login(site.technician)
        cookie = client.cookies["sessionid"].value
        received = Timings("first image received (browser)")
        drawn = Timings("first image drawn (browser)")
        page_times = Timings("study page HTML (browser)")
        url = f"{uvicorn.base_url}/studies/{study.pk}/"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                for _ in range(options["first_image_runs"]):
                    context = browser.new_context()  # a new profile: nothing cached
                    context.add_cookies(
                        [{"name": "sessionid", "value": cookie, "url": uvicorn.base_url}]
                    )
                    page = context.new_page()
                    page.goto(url, wait_until="commit")
                    page.wait_for_function(
                        "() => document.getElementById('viewer')?.dataset.shownUrl", timeout=30_000
                    )
                    seen = page.evaluate(FIRST_IMAGE_JS)
                    context.close()
                    if seen["receivedAt"] is None:
                        raise BenchError(f"no rendered image was loaded: {seen}")
                    received.seconds.append(seen["receivedAt"] / 1000)
                    drawn.seconds.append(seen["drawnAt"] / 1000)
                    page_times.seconds.append(seen["pageAt"] / 1000)
            finally:
                browser.close()
        for timings in (page_times, received, drawn):
            self.say(f"  {timings.name}: {timings.summary()}")
        self.out.figure(
            "wado.first_image_browser.p50_ms",
            received.p(50),
            "ms",
            "navigation start to the first rendered slice received",
        )
        self.out.figure("wado.first_image_browser.p95_ms", received.p(95), "ms")
        self.out.goal(
            f"first image of a study < {FIRST_IMAGE_GOAL_MS:.0f} ms",
            received.p(95) < FIRST_IMAGE_GOAL_MS,
            f"p95 {received.p(95):.0f} ms received, drawn p95 {drawn.p(95):.0f} ms",
        )
