"""Smoke test of the benchmark commands: each runs end to end at a tiny size against real
processes (uvicorn, the gateway, Chromium) and prints its figure lines. No timing is
asserted: speed is what the commands report (docs/benchmarks.md), not what tests check."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from referrals.models import Instance, Study

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIGURE_RE = re.compile(r"^FIGURE (\S+(?: \S+)*?) = (\S+) ", re.MULTILINE)
TINY_CT = ["--studies", "1", "--per-study", "6", "--size", "64", "--no-pydicom-files"]


@pytest.fixture(autouse=True)
def _corpus_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_BENCH_CACHE", str(tmp_path / "corpus"))


def run(command: str, *args: str, log_dir) -> dict[str, float]:
    out = io.StringIO()
    call_command(command, *args, "--log-dir", str(log_dir), stdout=out)
    text = out.getvalue()
    figures = {name: float(value) for name, value in FIGURE_RE.findall(text)}
    assert figures, text
    assert re.search(r"^machine: nproc=", text, re.MULTILINE), text
    return figures


def test_bench_stow_stores_the_corpus_and_prints_its_throughput(tmp_path):
    figures = run(
        "bench_stow",
        *TINY_CT,
        "--no-orthanc",
        "--workers",
        "1",
        "--clients",
        "2",
        "--batch",
        "4",
        "--keep-data",
        log_dir=tmp_path / "logs",
    )
    assert figures["stow.hub.instances_per_s"] > 0
    assert figures["stow.hub.mb_per_s"] > 0
    [site_rows] = {
        Instance.objects.filter(institution=i).count()
        for i in {r.institution for r in Instance.objects.all()}
    }
    assert site_rows == 6


def test_bench_gateway_sends_through_run_gateway_until_the_hub_confirms(tmp_path):
    if shutil.which("storescu") is None:
        pytest.fail("dcmtk is missing: deploy/local/ensure-services.sh installs it")
    figures = run(
        "bench_gateway",
        *TINY_CT,
        "--no-orthanc",
        "--workers",
        "1",
        "--associations",
        "2",
        "--keep-data",
        log_dir=tmp_path / "logs",
    )
    assert figures["gateway.received.instances_per_s"] > 0
    assert figures["gateway.confirmed.instances_per_s"] > 0
    assert figures["gateway.confirm_delay_s"] >= 0
    assert Instance.objects.filter(received_via="gateway").count() == 6


def test_bench_qido_seeds_an_index_and_times_every_query_shape(tmp_path):
    figures = run(
        "bench_qido",
        "--studies",
        "300",
        "--sites",
        "5",
        "--repeat",
        "2",
        "--workers",
        "1",
        log_dir=tmp_path / "logs",
    )
    assert Study.objects.filter(institution__code__startswith="bench-q-").count() == 300
    shapes = [name for name in figures if name.startswith("qido.p95_ms[")]
    assert len(shapes) >= 12
    assert "qido.p95_ms[PatientName Chinese (王^小明)]" in figures
    assert all(figures[name] > 0 for name in shapes)


@pytest.mark.browser
def test_bench_wado_times_frames_and_the_first_image_in_a_browser(tmp_path):
    figures = run(
        "bench_wado",
        "--slices",
        "4",
        "--size",
        "64",
        "--repeat",
        "3",
        "--first-image-runs",
        "1",
        "--workers",
        "1",
        log_dir=tmp_path / "logs",
    )
    for name in (
        "wado.rendered.p95_ms",
        "wado.frames.p95_ms",
        "wado.first_image_dicomweb.p95_ms",
        "wado.first_image_browser.p95_ms",
    ):
        assert figures[name] > 0, name


def stored_objects() -> set[Path]:
    root = Path(default_storage.path("instances"))
    return set(root.rglob("*.dcm")) if root.exists() else set()


def test_bench_ingest_memory_samples_the_web_process_for_both_study_sizes(tmp_path):
    before = stored_objects()
    figures = run(
        "bench_ingest_memory",
        "--instances",
        "6",
        "--small-instances",
        "3",
        "--size",
        "64",
        log_dir=tmp_path / "logs",
    )
    for label in ("small", "big"):
        assert figures[f"memory.{label}.rss_before_mb"] > 10
        assert figures[f"memory.{label}.rss_peak_mb"] >= figures[f"memory.{label}.rss_before_mb"]
    assert figures["memory.big.study_mb"] > figures["memory.small.study_mb"]
    assert "memory.growth_difference_mb" in figures
    # Without --keep-data, what the run stored is deleted again: rows and objects.
    assert not Instance.objects.exists()
    assert stored_objects() == before


def test_bench_fuzz_sends_mutated_cases_through_stow_and_the_gateway(tmp_path):
    figures = run(
        "bench_fuzz",
        "--cases",
        "40",
        "--gateway-cases",
        "20",
        log_dir=tmp_path / "logs",
    )
    assert figures["fuzz.stow.cases"] == 40
    assert figures["fuzz.stow.server_errors"] == 0
    assert figures["fuzz.gateway.cases"] == 20
    assert figures["fuzz.gateway.server_errors"] == 0
    assert figures["fuzz.server_errors"] == 0
