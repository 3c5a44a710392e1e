"""A hospital's PACS pushing to the hub, both ways a real Orthanc 1.10 does it: STOW-RS by its
DICOMweb plugin with a connected system credential that may store, and C-STORE to the
clinic's gateway, which forwards to the hub. The same instances by the other route, and the
same data set re-sent after the gateway delivered it, are idempotent successes: Orthanc's
job succeeds, the hub keeps one copy, nothing is refused 0x0111, and the gateway's
rejected/ stays empty (docs/archive-reconciliation.md, docs/connected-systems.md)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from pydicom.uid import UID, ImplicitVRLittleEndian

from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import HeldInstance, Instance
from tenants.access import scope_for_user
from tenants.connected_systems import connected_system_create
from tenants.services import gateway_credential_create

from .processes import base_env, free_port, start, wait_until
from .test_connected_system_peers import DICOMWEB_PLUGIN, ORTHANC, Orthanc
from .test_gateway_e2e import (  # noqa: F401 - fixtures used by name
    GATEWAY_AE,
    GatewayProcess,
    clinic_venv,
)
from .test_mdt_server import uvicorn

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PACS_AE = "HOSPITAL_PACS"  # Orthanc's own AE title: the calling AE the gateway must accept
PATIENT = SyntheticPatient("OP-0001", "Li^Lei=李^雷", birth_date="19750505", sex="M")


@dataclass
class Site:
    orthanc: Orthanc
    gateway: GatewayProcess


@pytest.fixture
def hub_url(settings, tmp_path) -> Iterator[str]:
    """The hub as deployed: uvicorn on the test database. Orthanc's DICOMweb plugin sends
    STOW-RS bodies with Transfer-Encoding: chunked (no Content-Length); uvicorn decodes
    them, the WSGI test server behind `live_server` does not (Django reads an empty body
    and the hub answers 400)."""
    port = free_port()
    (tmp_path / "hub").mkdir()
    hub = uvicorn(port, tmp_path / "hub", settings)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        hub.stop(signal.SIGTERM, timeout=30)


@pytest.fixture
def gateway(world, hub_url, clinic_venv, tmp_path) -> Iterator[GatewayProcess]:  # noqa: F811
    """The clinic's gateway, accepting Orthanc's AE title as a calling AE."""
    credential, secret = gateway_credential_create(
        scope=scope_for_user(world.adam), label="Hospital PACS", calling_ae_titles=[PACS_AE]
    )
    process = GatewayProcess(
        venv=clinic_venv,
        port=free_port(),
        spool=tmp_path / "spool",
        hub_url=f"{hub_url}/dicomweb/studies",
        key_id=credential.key_id,
        secret=secret,
        log_dir=tmp_path,
    )
    try:
        process.start()
        yield process
    finally:
        if process.proc is not None:
            process.proc.stop(signal.SIGTERM, timeout=30)


@pytest.fixture
def site(world, hub_url, gateway, tmp_path) -> Iterator[Site]:
    if not (ORTHANC.exists() and DICOMWEB_PLUGIN.exists()):
        pytest.fail(
            "Orthanc and its DICOMweb plugin are missing: apt-get install orthanc orthanc-dicomweb"
        )
    system, secret = connected_system_create(
        scope=scope_for_user(world.adam), name="Orthanc PACS", may_store=True
    )

    port, dicom_port = free_port(), free_port()
    storage = tmp_path / "orthanc-db"
    storage.mkdir()
    # The push configuration docs/connected-systems.md shows: the gateway as a DICOM
    # modality, the hub as a DICOMweb server with the credential that may store.
    config = {
        "Name": "HOSPITAL_PACS",
        "DicomAet": PACS_AE,
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        # Lets the conflict test replace an instance in Orthanc under the same SOP UID.
        "OverwriteInstances": True,
        "DicomModalities": {"gw": [GATEWAY_AE, "127.0.0.1", gateway.port]},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {
                "hub": {
                    "Url": f"{hub_url}/dicomweb/",
                    "Username": system.key_id,
                    "Password": secret,
                }
            },
        },
    }
    config_path = tmp_path / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = base_env(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(name, None)
    proc = start("orthanc", [ORTHANC, config_path], env=env, log_dir=tmp_path, cwd=tmp_path)
    orthanc = Orthanc(proc, port)

    def up() -> bool:
        try:
            return orthanc.get("/system").status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, timeout=60, what="Orthanc to answer", watch=[proc], interval=0.2)
        yield Site(orthanc=orthanc, gateway=gateway)
    finally:
        proc.stop(timeout=30)


def upload(orthanc: Orthanc, count: int, transfer_syntax: str = "") -> tuple[str, set[str]]:
    """A CT series put into Orthanc through its REST API: (Orthanc's study ID, SOP UIDs)."""
    study_ids, sop_uids = set(), set()
    for ds in ct_series(patient=PATIENT, count=count, size=64):
        if transfer_syntax:
            ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        answer = orthanc.session.post(f"{orthanc.url}/instances", data=to_bytes(ds), timeout=60)
        assert answer.status_code == 200, answer.text
        study_ids.add(answer.json()["ParentStudy"])
        sop_uids.add(str(ds.SOPInstanceUID))
    [study_id] = study_ids
    return study_id, sop_uids


def stow(orthanc: Orthanc, study_id: str) -> None:
    answer = orthanc.post(
        "/dicom-web/servers/hub/stow", {"Resources": [study_id], "Synchronous": True}
    )
    # The plugin fails the request when the hub's answer lists a FailedSOPSequence.
    assert answer.status_code == 200, answer.text + orthanc.proc.tail()


def c_store(site: Site, study_id: str, count: int) -> None:
    answer = site.orthanc.post(
        "/modalities/gw/store", {"Resources": [study_id], "Synchronous": True}
    )
    assert answer.status_code == 200, answer.text + site.orthanc.proc.tail()
    job = answer.json()
    assert job["InstancesCount"] == count
    assert job["FailedInstancesCount"] == 0
    assert site.gateway.proc is not None
    wait_until(
        lambda: site.gateway.status()["files"] == 0,
        timeout=90,
        what="the gateway's spool to empty",
        watch=[site.gateway.proc],
        interval=0.3,
    )


def held(world, sop_uids: set[str]) -> set[str]:
    """The SOP UIDs the hub holds for the clinic, once each."""
    rows = list(
        Instance.objects.filter(institution=world.clinic, sop_uid__in=sop_uids).values_list(
            "sop_uid", flat=True
        )
    )
    assert len(rows) == len(set(rows))
    return set(rows)


def assert_nothing_refused(world, site: Site) -> None:
    assert site.gateway.status()["rejected"] == 0
    assert list((site.gateway.spool / "rejected").glob("*")) == []
    assert not HeldInstance.objects.filter(institution=world.clinic).exists()


def test_orthanc_stow_then_the_same_study_by_c_store_through_the_gateway(world, site):
    study_id, sop_uids = upload(site.orthanc, count=3)

    stow(site.orthanc, study_id)
    assert held(world, sop_uids) == sop_uids

    # The same instances by C-STORE: the gateway's file meta differs, the data sets do not.
    c_store(site, study_id, count=3)
    assert held(world, sop_uids) == sop_uids
    assert_nothing_refused(world, site)

    # And STOW once more: still a success, still one copy.
    stow(site.orthanc, study_id)
    assert held(world, sop_uids) == sop_uids
    assert Instance.objects.filter(institution=world.clinic).count() == 3
    assert_nothing_refused(world, site)


def test_orthanc_c_store_through_the_gateway_then_stow_and_a_resend(world, site):
    study_id, sop_uids = upload(site.orthanc, count=2)

    c_store(site, study_id, count=2)
    assert held(world, sop_uids) == sop_uids
    assert_nothing_refused(world, site)

    # The data sets the gateway delivered, now by STOW: Orthanc's job succeeds.
    stow(site.orthanc, study_id)
    assert held(world, sop_uids) == sop_uids

    # Orthanc re-sends the study to the gateway after it was delivered: forwarded, accepted
    # as a duplicate, gone from the spool, not in rejected/.
    c_store(site, study_id, count=2)
    assert held(world, sop_uids) == sop_uids
    assert Instance.objects.filter(institution=world.clinic).count() == 2
    assert_nothing_refused(world, site)


def test_implicit_vr_instances_by_c_store_then_stow(world, site):
    """The transfer syntax old modalities send: whatever Orthanc proposes to the gateway and
    whatever it sends by STOW, the data set is the same one and stored once."""
    study_id, sop_uids = upload(site.orthanc, count=2, transfer_syntax=ImplicitVRLittleEndian)
    c_store(site, study_id, count=2)
    assert held(world, sop_uids) == sop_uids
    stow(site.orthanc, study_id)
    c_store(site, study_id, count=2)
    assert held(world, sop_uids) == sop_uids
    assert set(
        Instance.objects.filter(institution=world.clinic).values_list(
            "transfer_syntax_uid", flat=True
        )
    ) == {ImplicitVRLittleEndian}
    assert_nothing_refused(world, site)


def test_a_truly_different_data_set_from_orthanc_is_refused_and_the_original_kept(world, site):
    """The test above can fail: a changed data set under a stored UID is still a conflict."""
    study_id, sop_uids = upload(site.orthanc, count=1)
    stow(site.orthanc, study_id)
    [sop_uid] = sop_uids
    [instance_id] = [i["ID"] for i in site.orthanc.get(f"/studies/{study_id}/instances").json()]
    # Orthanc's own "modify" keeping the SOP Instance UID: another data set, same UID.
    modified = site.orthanc.post(
        f"/instances/{instance_id}/modify",
        {
            "Replace": {"ImageComments": "re-windowed at the PACS"},
            "Keep": ["SOPInstanceUID"],
            "Force": True,
        },
    )
    assert modified.status_code == 200
    changed = site.orthanc.session.post(
        f"{site.orthanc.url}/instances", data=modified.content, timeout=60
    )
    assert changed.status_code == 200
    assert changed.json()["ID"] == instance_id  # replaced in Orthanc, same UID
    answer = site.orthanc.post(
        "/dicom-web/servers/hub/stow",
        {"Resources": [changed.json()["ParentStudy"]], "Synchronous": True},
    )
    # The plugin reports the hub's FailedSOPSequence as a failed request.
    assert answer.status_code != 200, answer.text
    [instance] = Instance.objects.filter(institution=world.clinic, sop_uid=sop_uid)
    assert HeldInstance.objects.filter(
        institution=world.clinic, sop_uid=sop_uid, kind=HeldInstance.Kind.CONFLICT
    ).exists()
    assert HeldInstance.objects.filter(institution=world.clinic).count() == 1
    assert instance.dataset_sha256
