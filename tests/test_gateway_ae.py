"""The gateway's DICOM door: which AE titles may be called, and retired storage SOP classes.

The SCP runs in-process on a real socket; pynetdicom and dcmtk's storescu are the modality.
The same checks through an installed gateway to a real hub are in test_gateway_e2e.py.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from hub_gateway.config import GatewayConfigError, load_config
from hub_gateway.scp import RETIRED_STORAGE_SOP_CLASSES, StorageSCP
from hub_gateway.spool import Spool
from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes

from .gateway_support import KEY_ID, SECRET

US_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
US_MULTIFRAME_RETIRED = "1.2.840.10008.5.1.4.1.1.3"
NM_RETIRED = "1.2.840.10008.5.1.4.1.1.5"


def retired_instance(sop_class: str, modality: str, patient_id: str = "GW-RET-1") -> Dataset:
    """A small image as an old machine sends it: a retired SOP class, its own modality."""
    [ds] = ct_series(patient=SyntheticPatient(patient_id, "Wang^Wu=王^五"), count=1, size=32)
    ds.SOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.Modality = modality
    return ds


def scp_for(tmp_path: Path, **options: object) -> StorageSCP:
    server = StorageSCP(
        ae_title="HUB_GW",
        bind_host="127.0.0.1",
        port=0,
        spool=Spool(tmp_path / "spool"),
        **options,  # type: ignore[arg-type]
    )
    server.set_accepted(["US_ROOM1"])
    server.start()
    return server


@pytest.fixture
def scp(tmp_path):
    server = scp_for(tmp_path)
    yield server
    server.stop()


def associate(port: int, *, called: str, calling: str = "US_ROOM1", contexts=()):
    ae = AE(ae_title=calling)
    for abstract in contexts or (Verification,):
        ae.add_requested_context(abstract, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=called)


def storescu(port: int, path: Path, *, called: str, calling: str = "US_ROOM1"):
    if shutil.which("storescu") is None:
        pytest.fail("dcmtk is missing: deploy/local/ensure-services.sh installs it")
    # -R: propose the files' own SOP classes, as a modality does (storescu's default list
    # of contexts has no retired class in it).
    return subprocess.run(
        ["storescu", "-R", "-aet", calling, "-aec", called, "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- retired storage SOP classes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sop_class", "modality"),
    [(US_RETIRED, "US"), (US_MULTIFRAME_RETIRED, "US"), (NM_RETIRED, "NM")],
)
def test_a_retired_storage_class_is_accepted_and_spooled(scp, sop_class, modality):
    ds = retired_instance(sop_class, modality)
    assoc = associate(scp.port, called="HUB_GW", contexts=[sop_class])
    assert assoc.is_established
    try:
        assert assoc.accepted_contexts[0].abstract_syntax == sop_class
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    [spooled] = list(scp.spool.root.glob("*.dcm"))
    stored = pydicom.dcmread(spooled)
    assert stored.file_meta.MediaStorageSOPClassUID == sop_class
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    assert json.loads(spooled.with_suffix(".json").read_text())["sop_class_uid"] == sop_class


def test_every_retired_storage_class_of_the_standard_is_supported(scp):
    """The list in scp.py against pydicom's copy of PS3.6 Annex A: none forgotten."""
    retired = {
        uid
        for uid, (name, kind, _info, status, _keyword) in UID_dictionary.items()
        if kind == "SOP Class"
        and status == "Retired"
        and "Storage" in name
        and "Storage Commitment" not in name
    }
    assert retired == set(RETIRED_STORAGE_SOP_CLASSES)
    supported = {cx.abstract_syntax for cx in scp.ae.supported_contexts}
    assert retired <= supported
    # Current classes are all still there: the retired ones came on top.
    assert "1.2.840.10008.5.1.4.1.1.6.1" in supported
    assert len(supported) > 128  # no per-association cap applies to what an SCP supports


def test_storescu_sends_a_retired_ultrasound_image(scp, tmp_path):
    path = tmp_path / "us.dcm"
    path.write_bytes(to_bytes(retired_instance(US_RETIRED, "US")))
    result = storescu(scp.port, path, called="HUB_GW")
    assert result.returncode == 0, result.stdout + result.stderr
    [spooled] = list(scp.spool.root.glob("*.dcm"))
    assert pydicom.dcmread(spooled).SOPClassUID == US_RETIRED


# --- the called AE title ------------------------------------------------------------------


def test_a_wrong_called_ae_title_is_rejected_with_reason_7(scp, tmp_path, caplog):
    caplog.set_level("INFO")
    path = tmp_path / "us.dcm"
    path.write_bytes(to_bytes(retired_instance(US_RETIRED, "US")))
    wrong = storescu(scp.port, path, called="WRONG")
    assert wrong.returncode != 0
    assert "Called AE Title Not Recognized" in wrong.stdout + wrong.stderr
    assert list(scp.spool.root.glob("*.dcm")) == []
    assert "it called AE title 'WRONG', not this gateway (HUB_GW)" in caplog.text

    assoc = associate(scp.port, called="WRONG")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 0x07
    assert assoc.acceptor.primitive.result_source == 0x01

    right = storescu(scp.port, path, called="HUB_GW")
    assert right.returncode == 0, right.stdout + right.stderr
    assert len(list(scp.spool.root.glob("*.dcm"))) == 1


def test_a_wrong_called_ae_wins_over_a_wrong_calling_ae(scp):
    assoc = associate(scp.port, called="WRONG", calling="STRANGER")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 0x07
    assoc = associate(scp.port, called="HUB_GW", calling="STRANGER")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 0x03


def test_aliases_are_accepted_and_recorded_as_called(tmp_path):
    server = scp_for(tmp_path, called_ae_titles=["OLD_GW", " PACS "])
    try:
        assert server.called_ae_titles == ("HUB_GW", "OLD_GW", "PACS")
        for called in ("HUB_GW", "OLD_GW", "PACS"):
            assoc = associate(server.port, called=called, contexts=[US_RETIRED])
            assert assoc.is_established, called
            assert assoc.send_c_store(retired_instance(US_RETIRED, "US", called)).Status == 0
            assoc.release()
        assert associate(server.port, called="OTHER").is_rejected
        sidecars = [json.loads(p.read_text()) for p in server.spool.root.glob("*.json")]
        assert sorted(s["called_ae"] for s in sidecars) == ["HUB_GW", "OLD_GW", "PACS"]
    finally:
        server.stop()


def test_accept_any_called_ae_is_an_explicit_choice(tmp_path):
    server = scp_for(tmp_path, accept_any_called_ae=True)
    try:
        assoc = associate(server.port, called="ANYTHING")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        # The calling AE titles the hub lists still apply.
        assert associate(server.port, called="ANYTHING", calling="STRANGER").is_rejected
    finally:
        server.stop()


def test_called_ae_settings_are_checked(tmp_path):
    base = {"spool_dir": str(tmp_path), "hub_url": "http://127.0.0.1:1/", "key_id": KEY_ID}
    env = {"GATEWAY_SECRET": SECRET}
    config = load_config(base, environ=env)
    assert config.called_ae_titles == ()
    assert config.accept_any_called_ae is False
    config = load_config(
        base,
        environ={
            **env,
            "GATEWAY_CALLED_AE_TITLES": "OLD_GW, PACS",
            "GATEWAY_ACCEPT_ANY_CALLED_AE": "yes",
        },
    )
    assert config.called_ae_titles == ("OLD_GW", "PACS")
    assert config.accept_any_called_ae is True
    config = load_config({**base, "called_ae_titles": "CLI_GW"}, environ=env)
    assert config.called_ae_titles == ("CLI_GW",)
    with pytest.raises(GatewayConfigError, match="--called-ae-titles"):
        load_config({**base, "called_ae_titles": "A_TITLE_LONGER_THAN_16"}, environ=env)
    with pytest.raises(GatewayConfigError, match="GATEWAY_ACCEPT_ANY_CALLED_AE"):
        load_config(base, environ={**env, "GATEWAY_ACCEPT_ANY_CALLED_AE": "maybe"})


def test_the_retired_instance_reads_back_unchanged(scp):
    ds = retired_instance(NM_RETIRED, "NM")
    assoc = associate(scp.port, called="HUB_GW", contexts=[NM_RETIRED])
    assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    [spooled] = list(scp.spool.root.glob("*.dcm"))
    sent = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    assert pydicom.dcmread(spooled).PixelData == sent.PixelData
