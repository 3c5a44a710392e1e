"""The gateway's Modality Worklist: matching rules, then end to end with dcmtk's `findscu -W`
as the scanner, the real `hub-gateway` process, and the hub as a real HTTP server behind a
switch that can take it off the network."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.utils import timezone
from hub_gateway.worklist import WorklistCache, find, matches
from pydicom.dataset import Dataset

from referrals.archive.stability import generation_of
from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import ExamRegistration, RegistrationStatus, Study
from referrals.registration import services
from referrals.tasks import registration_match_when_stable
from tenants.access import scope_for_user
from tenants.services import gateway_credential_create

from .processes import ROOT, free_port, wait_until
from .test_gateway_e2e import (  # noqa: F401 - `switch` is a fixture used by name
    GATEWAY_AE,
    MODALITY_AE,
    GatewayProcess,
    Scanner,
    switch,
)

# --- Matching (no network) ---------------------------------------------------------------------


def exam(
    *,
    name: str = "Wang^Jianguo=王^建国",
    modality: str = "CT",
    station: str = "",
    date: str = "20310506",
    time: str = "093000",
    accession: str = "3105060001",
    patient_id: str = "MZ-1",
) -> Dataset:
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.PatientName = name
    item.PatientID = patient_id
    item.AccessionNumber = accession
    item.StudyInstanceUID = "1.2.3." + accession
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = time
    step.ScheduledProcedureStepDescription = "胸部CT"
    item.ScheduledProcedureStepSequence = [step]
    return item


def query(**keys: str) -> Dataset:
    q = Dataset()
    q.SpecificCharacterSet = "ISO_IR 192"
    step = Dataset()
    for keyword in ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate"):
        setattr(step, keyword, keys.get(keyword, ""))
    q.ScheduledProcedureStepSequence = [step]
    q.PatientName = keys.get("PatientName", "")
    q.PatientID = keys.get("PatientID", "")
    q.AccessionNumber = keys.get("AccessionNumber", "")
    return q


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ({}, True),
        ({"Modality": "CT"}, True),
        ({"Modality": "MR"}, False),
        ({"ScheduledProcedureStepStartDate": "20310506"}, True),
        ({"ScheduledProcedureStepStartDate": "20310507"}, False),
        ({"ScheduledProcedureStepStartDate": "20310501-20310506"}, True),
        ({"ScheduledProcedureStepStartDate": "20310507-"}, False),
        ({"ScheduledProcedureStepStartDate": "-20310506"}, True),
        ({"ScheduledStationAETitle": "CT_ROOM1"}, True),  # no scanner named: every scanner
        ({"PatientName": "王*"}, True),
        ({"PatientName": "wang*"}, True),
        ({"PatientName": "Wang^Jianguo"}, True),
        ({"PatientName": "李*"}, False),
        ({"PatientName": "W?ng*"}, True),
        ({"PatientID": "MZ-1"}, True),
        ({"PatientID": "MZ-2"}, False),
        ({"PatientID": "MZ*"}, True),
        ({"AccessionNumber": "3105060001"}, True),
        ({"AccessionNumber": "3105060002"}, False),
    ],
)
def test_matching_keys(keys, found):
    assert matches(query(**keys), exam()) is found


def test_a_named_scanner_gets_only_its_exams():
    mine = exam(station="CT_ROOM1")
    assert matches(query(ScheduledStationAETitle="CT_ROOM1"), mine)
    assert not matches(query(ScheduledStationAETitle="CT_ROOM2"), mine)


def test_the_answer_holds_the_keys_asked_filled_from_the_exam():
    q = query(Modality="CT")
    q.PatientBirthDate = ""
    q.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime = ""
    [answer] = find(q, [exam(), exam(modality="MR", accession="2")])
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Wang^Jianguo=王^建国"
    assert answer["PatientBirthDate"].is_empty  # asked, not kept: returned empty
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepStartTime == "093000"
    assert "ScheduledProcedureStepDescription" not in step  # not asked


def test_the_cache_survives_a_restart_and_skips_an_unreadable_item(tmp_path):
    cache = WorklistCache(tmp_path)
    assert cache.load() == 0
    assert cache.replace([exam().to_json_dict(), {"00100010": {"vr": "PN", "Value": "x"}}]) == 1
    again = WorklistCache(tmp_path)
    assert again.load() == 1
    assert str(again.items()[0].PatientName) == "Wang^Jianguo=王^建国"
    assert again.fetched_at == cache.fetched_at


# --- End to end ---------------------------------------------------------------------------------

HUB_VENV = ROOT / ".venv"  # the gateway as installed in the hub's venv (editable)
RETURN_KEYS = [
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "ReferringPhysicianName",
    "RequestingPhysician",
]
STEP = "(0040,0100)[0]"
STEP_KEYS = {
    "Modality": "(0008,0060)",
    "ScheduledStationAETitle": "(0040,0001)",
    "ScheduledProcedureStepStartDate": "(0040,0002)",
    "ScheduledProcedureStepStartTime": "(0040,0003)",
    "ScheduledProcedureStepDescription": "(0040,0007)",
    "ScheduledProcedureStepID": "(0040,0009)",
}


def findscu(port: int, out: Path, **wanted: str) -> list[Dataset]:
    """dcmtk's findscu -W as a scanner asks: every return key, some with a value."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    keys = ["-k", "(0008,0005)=ISO_IR 192"]
    for keyword in RETURN_KEYS:
        keys += ["-k", f"{keyword}={wanted.get(keyword, '')}"]
    for keyword, tag in STEP_KEYS.items():
        keys += ["-k", f"{STEP}.{tag}={wanted.get(keyword, '')}"]
    result = subprocess.run(
        [
            "findscu",
            *("-W", "-X", "-od", str(out), "-aet", MODALITY_AE, "-aec", GATEWAY_AE),
            *keys,
            *("127.0.0.1", str(port)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [pydicom.dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def accessions(answers: list[Dataset]) -> list[str]:
    return sorted(str(a.AccessionNumber) for a in answers)


@pytest.fixture
def mwl_gateway(world, switch, tmp_path) -> Iterator[GatewayProcess]:  # noqa: F811
    if not shutil.which("findscu"):
        pytest.fail("dcmtk is missing: deploy/local/ensure-services.sh installs it")
    credential, secret = gateway_credential_create(
        scope=scope_for_user(world.adam), label="CT room 1", calling_ae_titles=[MODALITY_AE]
    )
    process = GatewayProcess(
        venv=HUB_VENV,
        port=free_port(),
        spool=tmp_path / "spool",
        hub_url=switch.url,
        key_id=credential.key_id,
        secret=secret,
        log_dir=tmp_path,
    )
    process.argv += ["--worklist-refresh", "0.5"]
    process.start()
    yield process
    if process.proc is not None:
        process.proc.stop(signal.SIGTERM, timeout=30)


def _register(world, user, **overrides: Any) -> ExamRegistration:
    fields: dict[str, Any] = {
        "patient_id": "MZ-0001",
        "issuer": "north-clinic",
        "family_name": "王",
        "given_name": "建国",
        "modality": "CT",
        "procedure_description": "胸部CT平扫",
        "requesting_physician": "李明",
        "birth_date": dt.date(1961, 3, 2),
        "sex": "M",
        "scheduled_at": timezone.now(),
    }
    fields.update(overrides)
    return services.registration_create(scope=scope_for_user(user), **fields)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_scanner_reads_the_worklist_from_the_gateway_even_while_the_hub_is_down(
    world,
    mwl_gateway,
    switch,  # noqa: F811
    tmp_path,
):
    now = timezone.now()
    today = timezone.localtime(now).strftime("%Y%m%d")
    ct = _register(world, world.alice, scheduled_at=now)
    dx = _register(
        world,
        world.alice,
        patient_id="MZ-0002",
        family_name="李",
        given_name="秀英",
        sex="F",
        modality="DX",
        procedure_description="胸部正位片",
        scheduled_at=now + dt.timedelta(days=1),
    )
    gone = _register(world, world.alice, patient_id="MZ-0003", scheduled_at=now)
    services.registration_cancel(scope=scope_for_user(world.alice), registration=gone)
    south = _register(world, world.oscar, patient_id="S-0001", issuer="", scheduled_at=now)
    out = tmp_path / "answers"
    port = mwl_gateway.port
    assert mwl_gateway.proc is not None

    def at_least_two() -> list[Dataset] | None:
        answers = findscu(port, out)
        return answers if len(answers) >= 2 else None

    found = wait_until(
        at_least_two,
        timeout=60,
        what="the gateway's worklist",
        watch=[mwl_gateway.proc],
        interval=0.5,
    )
    assert found is not None
    everything = found
    # Its own site's scheduled exams only: not the cancelled one, never the other site's.
    assert accessions(everything) == sorted([ct.accession_number, dx.accession_number])
    assert {str(a.PatientID) for a in everything} == {"MZ-0001", "MZ-0002"}
    assert south.study_uid not in {str(a.StudyInstanceUID) for a in everything}
    [answer] = [a for a in everything if a.AccessionNumber == ct.accession_number]
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Wang^Jianguo=王^建国"
    assert answer.PatientName.ideographic == "王^建国"
    assert answer.PatientID == "MZ-0001"
    assert answer.IssuerOfPatientID == "north-clinic"
    assert answer.PatientBirthDate == "19610302"
    assert answer.PatientSex == "M"
    assert answer.StudyInstanceUID == ct.study_uid
    assert answer.RequestedProcedureDescription == "胸部CT平扫"
    assert str(answer.RequestingPhysician) == "Li^Ming=李^明"
    assert str(answer.ReferringPhysicianName) == "Li^Ming=李^明"
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT"
    assert step.ScheduledProcedureStepStartDate == today
    assert step.ScheduledProcedureStepID == ct.accession_number

    # Filters: modality, date, name (in characters), patient ID.
    assert accessions(findscu(port, out, Modality="DX")) == [dx.accession_number]
    assert findscu(port, out, Modality="MR") == []
    assert accessions(findscu(port, out, ScheduledProcedureStepStartDate=today)) == [
        ct.accession_number
    ]
    assert accessions(findscu(port, out, PatientName="李*")) == [dx.accession_number]
    assert accessions(findscu(port, out, PatientID="MZ-0001")) == [ct.accession_number]

    # The uplink drops: the scanner is still answered from the gateway's copy, even after
    # the gateway restarts without the hub.
    switch.down()
    later = _register(world, world.alice, patient_id="MZ-0004", scheduled_at=now)
    wait_until(
        lambda: "cannot refresh the worklist" in mwl_gateway.proc.log(),
        timeout=60,
        what="the gateway to notice the hub is gone",
        watch=[mwl_gateway.proc],
    )
    assert accessions(findscu(port, out)) == sorted([ct.accession_number, dx.accession_number])
    mwl_gateway.proc.stop(signal.SIGTERM, timeout=30)
    restarted = mwl_gateway.start()
    assert "2 scheduled exam(s) in the worklist kept from before" in restarted.log()
    assert accessions(findscu(port, out, Modality="CT")) == [ct.accession_number]

    # Back online: the new exam appears; the CT is done on the scanner with the worklist's
    # UIDs and sent through the gateway, and completes its registration.
    switch.up()
    wait_until(
        lambda: later.accession_number in accessions(findscu(port, out)),
        timeout=60,
        what="the new exam in the worklist",
        watch=[restarted],
        interval=0.5,
    )
    patient = SyntheticPatient(str(answer.PatientID), str(answer.PatientName), "19610302", "M")
    folder = tmp_path / "ct"
    folder.mkdir()
    files = []
    for ds in ct_series(
        patient=patient,
        count=2,
        study_uid=str(answer.StudyInstanceUID),
        accession=str(answer.AccessionNumber),
        size=64,
    ):
        path = folder / f"{ds.InstanceNumber}.dcm"
        path.write_bytes(to_bytes(ds))
        files.append(path)
    Scanner(port).store_ok(files)
    study = wait_until(
        lambda: Study.objects.filter(
            institution=world.clinic, study_uid=ct.study_uid, num_instances=2
        ).first(),
        timeout=90,
        what="the study at the hub",
        watch=[restarted],
        interval=0.3,
    )
    assert study is not None
    stable_at = timezone.now()
    Study.objects.filter(pk=study.pk).update(stable_at=stable_at)
    assert registration_match_when_stable(study.pk, generation_of(stable_at)) == ct.pk
    ct.refresh_from_db()
    assert ct.status == RegistrationStatus.COMPLETED
    assert ct.study_id == study.pk
    assert not ct.patient_id_mismatch
    # Completed exams leave the worklist at the next refresh.
    wait_until(
        lambda: ct.accession_number not in accessions(findscu(port, out)),
        timeout=60,
        what="the completed exam to leave the worklist",
        watch=[restarted],
        interval=0.5,
    )
