"""A connected system's credential used by peers nobody here wrote: a real Orthanc 1.10 (the
hospital's PACS) whose DICOMweb plugin has the hub in its "Servers", and dicomweb-client with
HTTP Basic. Each sees its institution's studies only, and nothing once revoked."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from requests.auth import HTTPBasicAuth

from referrals.models import Study
from tenants.access import scope_for_user
from tenants.connected_systems import connected_system_create, connected_system_revoke
from tenants.models import ConnectedSystem

from .processes import Proc, base_env, free_port, http, start, wait_until
from .test_qido import OBRIEN, WANG, ZHANG, series, store

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@pytest.fixture
def studies(world, tmp_path) -> dict[str, str]:
    """Two studies at the north clinic, one at the outsider clinic (the other alliance)."""
    store(world.clinic, series(WANG, count=2), tmp_path)
    store(world.clinic, series(ZHANG, count=1, modality="MR"), tmp_path)
    store(world.outsider, series(OBRIEN, count=1), tmp_path)
    uids = {
        s.institution.code + ":" + s.patient.patient_id: s.study_uid
        for s in Study.objects.select_related("institution", "patient")
    }
    return {
        "wang": uids["north-clinic:P0001"],
        "zhang": uids["north-clinic:P0002"],
        "south": uids["south-clinic:P0003"],
    }


@pytest.fixture
def pacs_credential(world) -> tuple[ConnectedSystem, str]:
    return connected_system_create(scope=scope_for_user(world.adam), name="Orthanc PACS")


class Orthanc:
    """A real Orthanc with its DICOMweb plugin, the hub in its "Servers" under `hub`."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.session = http()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(f"{self.url}{path}", data=json.dumps(body), timeout=120)

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=60)


@pytest.fixture
def orthanc(live_server, pacs_credential, tmp_path) -> Iterator[Orthanc]:
    if not (ORTHANC.exists() and DICOMWEB_PLUGIN.exists()):
        pytest.fail(
            "Orthanc and its DICOMweb plugin are missing: apt-get install orthanc orthanc-dicomweb"
        )
    system, secret = pacs_credential
    port, dicom_port = free_port(), free_port()
    storage = tmp_path / "orthanc-db"
    storage.mkdir()
    # The configuration a hospital's IT writes, as docs/connected-systems.md shows it.
    config = {
        "Name": "HOSPITAL_PACS",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {
                "hub": {
                    "Url": f"{live_server.url}/dicomweb/",
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
    server = Orthanc(proc, port)

    def up() -> bool:
        try:
            return server.get("/system").status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, timeout=60, what="Orthanc to answer", watch=[proc], interval=0.2)
        yield server
    finally:
        proc.stop(timeout=30)


def test_orthanc_queries_and_retrieves_the_institutions_studies_only(
    world, studies, pacs_credential, orthanc
):
    # QIDO-RS through Orthanc's DICOMweb client.
    found = orthanc.post("/dicom-web/servers/hub/qido", {"Uri": "/studies"})
    assert found.status_code == 200, orthanc.proc.tail()
    # Orthanc answers its own simplified form: one value per tag, as a string.
    uids = {item["0020000D"]["Value"] for item in found.json()}
    assert uids == {studies["wang"], studies["zhang"]}
    asked = orthanc.post(
        "/dicom-web/servers/hub/qido",
        {"Uri": "/studies", "Arguments": {"StudyInstanceUID": studies["south"]}},
    )
    assert asked.status_code == 200
    assert asked.json() == []

    # WADO-RS: Orthanc pulls a whole study into its own archive.
    pulled = orthanc.post(
        "/dicom-web/servers/hub/retrieve", {"Resources": [{"Study": studies["wang"]}]}
    )
    assert pulled.status_code == 200, orthanc.proc.tail()
    assert pulled.json()["ReceivedInstancesCount"] == "2"
    held = orthanc.get("/studies?expand").json()
    assert [s["MainDicomTags"]["StudyInstanceUID"] for s in held] == [studies["wang"]]
    assert len(orthanc.get(f"/studies/{held[0]['ID']}/instances").json()) == 2
    # The other alliance's study cannot be pulled, and Orthanc holds nothing more.
    refused = orthanc.post(
        "/dicom-web/servers/hub/retrieve", {"Resources": [{"Study": studies["south"]}]}
    )
    assert refused.status_code != 200
    assert len(orthanc.get("/studies").json()) == 1

    system, _secret = pacs_credential
    system.refresh_from_db()
    assert system.last_used_at is not None


def test_after_revocation_orthancs_calls_fail(world, studies, pacs_credential, orthanc):
    assert orthanc.post("/dicom-web/servers/hub/qido", {"Uri": "/studies"}).status_code == 200
    system, _secret = pacs_credential
    connected_system_revoke(scope=scope_for_user(world.adam), system=system)
    refused = orthanc.post("/dicom-web/servers/hub/qido", {"Uri": "/studies"})
    assert refused.status_code != 200
    # Orthanc passes the hub's 401 on: "Bad credentials were provided to an HTTP request".
    assert refused.status_code == 401
    assert refused.json()["OrthancStatus"] == 29
    pulled = orthanc.post(
        "/dicom-web/servers/hub/retrieve", {"Resources": [{"Study": studies["wang"]}]}
    )
    assert pulled.status_code != 200
    assert orthanc.get("/studies").json() == []


def test_dicomweb_client_with_the_basic_credential(world, live_server, studies, pacs_credential):
    system, secret = pacs_credential
    session = http()
    session.auth = HTTPBasicAuth(system.key_id, secret)
    client = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)
    found = {s["0020000D"]["Value"][0] for s in client.search_for_studies()}
    assert found == {studies["wang"], studies["zhang"]}
    instances = client.retrieve_study(studies["wang"])
    assert {str(ds.StudyInstanceUID) for ds in instances} == {studies["wang"]}
    assert len(instances) == 2
    assert client.search_for_studies(search_filters={"StudyInstanceUID": studies["south"]}) == []

    connected_system_revoke(scope=scope_for_user(world.adam), system=system)
    with pytest.raises(requests.HTTPError) as refused:
        client.search_for_studies()
    assert refused.value.response.status_code == 401
    # The same secret as a bearer token is refused too.
    bearer = http()
    token = f"{system.key_id}.{secret}"
    bearer.headers["Authorization"] = f"Bearer {token}"
    answer = bearer.get(f"{live_server.url}/dicomweb/studies", timeout=30)
    assert answer.status_code == 401
    assert base64.b64encode(secret.encode()) not in answer.content
