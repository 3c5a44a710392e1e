"""A correction done by a real Celery worker: queued after commit, progress counted, the
objects rewritten in the worker's process (the path a large study takes in production)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage

from alliance.celery import app
from referrals.archive.correction.services import correction_edit_request, study_for_correction
from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import Correction, Instance, Study
from tenants import access

from . import test_worker_integration as workers
from .processes import wait_until
from .test_worker_integration import Hub

hub = workers.hub  # the fixture: the processes of one test

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_rewrites_a_study_and_counts_its_progress(world, hub: Hub, settings):
    # The worker's storage is this test's: HUB_DATA_DIR/media in both processes.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": hub.log_dir / "media"},
        },
    }
    patient = SyntheticPatient("P0001", "Wang^Xiaoming")
    datasets = list(ct_series(patient=patient, count=25, size=16))
    for ds in datasets:
        path = Path(hub.log_dir) / f"{uuid.uuid4().hex}.dcm"
        path.write_bytes(to_bytes(ds))
        assert instance_store(institution=world.clinic, path=path, via="stow").ok
    study = Study.objects.get(study_uid=datasets[0].StudyInstanceUID)
    worker = hub.start_worker()
    saved = app.conf.task_default_queue
    app.conf.task_default_queue = hub.queue
    try:
        scope = access.scope_for_user(world.adam, institution_id=world.clinic.pk)
        study = study_for_correction(scope=scope, study_uid=study.study_uid)
        correction = correction_edit_request(
            scope=scope,
            study=study,
            changes={"PatientName": "Li^Si=李^四", "StudyDescription": "CT THORAX"},
            reason="Wrong patient picked at the scanner",
        )
    finally:
        app.conf.task_default_queue = saved

    wait_until(
        lambda: Correction.objects.get(pk=correction.pk).status in ("done", "failed"),
        timeout=60,
        what="the worker to finish the correction",
        watch=[worker],
    )
    correction.refresh_from_db()
    assert (correction.status, correction.done, correction.total) == ("done", 25, 25)
    assert "correction_run_task" in worker.log()
    study.refresh_from_db()
    assert (study.patient_name, study.description) == ("Li^Si=李^四", "CT THORAX")
    for instance in Instance.objects.filter(study=study):
        with default_storage.open(instance.object_key, "rb") as fp:
            ds = pydicom.dcmread(io.BytesIO(fp.read()))
        assert (str(ds.PatientName), ds.StudyDescription) == ("Li^Si=李^四", "CT THORAX")
        assert instance.metadata["00081030"]["Value"] == ["CT THORAX"]
