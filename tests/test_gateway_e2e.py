"""The gateway end to end, installed as a clinic installs it: the gateway package alone in an
empty virtualenv (no Django, nothing of the hub), its `hub-gateway` command as a real
process, dcmtk's echoscu/storescu as the scanner, and the hub as a real HTTP server
(pytest-django's live_server) behind a TCP switch that can take it off the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from pydicom.data import get_testdata_file

from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.models import Instance
from tenants.access import scope_for_user
from tenants.services import gateway_credential_create

from .processes import ROOT, Proc, base_env, free_port, start, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GATEWAY_SOURCE = ROOT / "gateway"
# The gateway's whole install: itself, DICOM, one HTTP client, and what a venv starts with.
# Pinned to the versions in the hub's venv, so the clinic gets the combination tested here.
GATEWAY_DEPENDENCIES = (
    "pynetdicom",
    "pydicom",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
)
CLINIC_DISTRIBUTIONS = {"alliance-hub-gateway", *GATEWAY_DEPENDENCIES, "pip", "setuptools"}
GATEWAY_AE = "HUB_GW"
MODALITY_AE = "CT_ROOM1"
# pydicom's own files, each with the storescu option that proposes its transfer syntax.
PYDICOM_FILES = {
    "CT_small.dcm": "-xe",  # Explicit VR Little Endian
    "JPEG2000.dcm": "-xw",  # JPEG 2000 (lossy or lossless), passed through undecoded
    "SC_rgb_rle.dcm": "-xr",  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS Lossless
}


class NetworkSwitch:
    """A TCP relay in front of the hub: `down()` refuses connections and cuts open ones;
    `lose_answers()` lets requests through but cuts the connection when the hub answers."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.mode = "down"
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicomweb/studies"

    def up(self) -> None:
        self._set("up")

    def lose_answers(self) -> None:
        self._set("lose_answers")

    def _set(self, mode: str) -> None:
        self.mode = mode
        if self._listener is None:
            listener = socket.create_server(("127.0.0.1", self.port))
            self._listener = listener
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        self.mode = "down"
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() first: a bare close() leaves the accept() in the other thread
            # blocked and still taking connections (Linux).
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if answers and self.mode == "lose_answers":
                    break  # the hub has done the work; the gateway never hears of it
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with self._lock:
                self._sockets.discard(sock)


def data_set_bytes(data: bytes) -> bytes:
    """What follows the file meta group: the bytes a C-STORE carries, unchanged."""
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return fp.read()


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def write_ct(folder: Path, count: int, patient_id: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    patient = SyntheticPatient(patient_id, "Zhang^San=张^三")
    paths = []
    for ds in ct_series(patient=patient, count=count, size=256):
        path = folder / f"{ds.InstanceNumber:04d}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def dcmtk(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Scanner:
    """dcmtk's storescu / echoscu pointed at the gateway."""

    def __init__(self, port: int) -> None:
        self.port = port

    def echo(self, calling: str = MODALITY_AE) -> subprocess.CompletedProcess[str]:
        return dcmtk("echoscu", "-aet", calling, "-aec", GATEWAY_AE, "127.0.0.1", str(self.port))

    def store(
        self, files: list[Path], *options: str, calling: str = MODALITY_AE
    ) -> subprocess.CompletedProcess[str]:
        return dcmtk(
            "storescu",
            *options,
            "-aet",
            calling,
            "-aec",
            GATEWAY_AE,
            "127.0.0.1",
            str(self.port),
            *files,
        )

    def store_ok(self, files: list[Path], *options: str) -> None:
        result = self.store(files, *options)
        assert result.returncode == 0, result.stdout + result.stderr


def clinic_env(**overrides: str) -> dict[str, str]:
    """The environment of a clinic PC's process: nothing that could reach the hub's code."""
    env = base_env(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **overrides)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def run_in(
    venv: Path, *argv: str | Path, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), *map(str, argv)],
        cwd=cwd,
        env=clinic_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def clinic_venv(tmp_path_factory) -> Path:
    """An empty virtualenv with `pip install gateway/` and nothing else, as on a clinic PC."""
    base = tmp_path_factory.mktemp("clinic-pc")
    # pip builds in the source tree (build/, *.egg-info): build a copy, not the checkout.
    source = base / "gateway"
    shutil.copytree(
        GATEWAY_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    constraints = base / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version(name)}\n" for name in GATEWAY_DEPENDENCIES))
    venv = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)],
        env=clinic_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    installed = run_in(
        venv, "-m", "pip", "install", "--quiet", "--constraint", constraints, source, cwd=base
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


def assert_installed_alone(venv: Path, cwd: Path) -> None:
    """The venv holds the gateway and its own dependencies: the hub cannot be imported."""
    listed = run_in(
        venv,
        "-c",
        "import importlib.metadata as m, re; print('\\n'.join("
        "re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() "
        "for d in m.distributions()))",
        cwd=cwd,
    )
    assert listed.returncode == 0, listed.stderr
    distributions = set(listed.stdout.split())
    assert "alliance-hub-gateway" in distributions
    assert distributions <= CLINIC_DISTRIBUTIONS, distributions - CLINIC_DISTRIBUTIONS
    for module in ("django", "psycopg", "numpy", "weasyprint", "channels", "referrals"):
        imported = run_in(venv, "-c", f"import {module}", cwd=cwd)
        assert imported.returncode != 0, f"{module} is importable on the clinic PC"
        assert f"No module named '{module}'" in imported.stderr
    hub_gateway = venv / "bin" / "hub-gateway"
    shown = subprocess.run(
        [str(hub_gateway), "--version"],
        cwd=cwd,
        env=clinic_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "hub-gateway 0.1.0"


class GatewayProcess:
    """`hub-gateway run` from the clinic venv; `hub-gateway status` to read its spool."""

    def __init__(
        self,
        *,
        venv: Path,
        port: int,
        spool: Path,
        hub_url: str,
        key_id: str,
        secret: str,
        log_dir: Path,
    ) -> None:
        self.command = venv / "bin" / "hub-gateway"
        self.port = port
        self.spool = spool
        self.log_dir = log_dir
        self.argv = [
            self.command,
            "run",
            "--ae-title",
            GATEWAY_AE,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--spool",
            spool,
            "--hub-url",
            hub_url,
            "--key-id",
            key_id,
            "--retry-base",
            "0.2",
            "--retry-max",
            "1",
            "--timeout",
            "30",
            "--forward-workers",
            "2",
            "--min-free-mb",
            "0",
        ]
        self.env = clinic_env(GATEWAY_SECRET=secret)
        self.runs = 0
        self.proc: Proc | None = None

    def start(self) -> Proc:
        self.runs += 1
        self.proc = start(
            f"gateway-{self.runs}", self.argv, env=self.env, log_dir=self.log_dir, cwd=self.log_dir
        )
        proc = self.proc
        wait_until(
            lambda: f"gateway {GATEWAY_AE} running" in proc.log(),
            timeout=60,
            what="the gateway to start",
            watch=[proc],
        )
        return proc

    def status(self) -> dict:
        result = subprocess.run(
            [str(self.command), "status", "--spool", str(self.spool), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            cwd=self.log_dir,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def switch(live_server) -> Iterator[NetworkSwitch]:
    host, port = live_server.thread.host, live_server.thread.port
    relay = NetworkSwitch((host, port))
    relay.up()
    yield relay
    relay.down()


@pytest.fixture
def gateway(world, switch, clinic_venv, tmp_path) -> Iterator[GatewayProcess]:
    if not (shutil.which("storescu") and shutil.which("echoscu")):
        pytest.fail("dcmtk is missing: deploy/local/ensure-services.sh installs it")
    credential, secret = gateway_credential_create(
        scope=scope_for_user(world.adam), label="CT room 1", calling_ae_titles=[MODALITY_AE]
    )
    process = GatewayProcess(
        venv=clinic_venv,
        port=free_port(),
        spool=tmp_path / "spool",
        hub_url=switch.url,
        key_id=credential.key_id,
        secret=secret,
        log_dir=tmp_path,
    )
    process.start()
    yield process
    if process.proc is not None:
        process.proc.stop(signal.SIGTERM, timeout=30)


def at_hub(world, uids: set[str]) -> dict[str, list[Instance]]:
    found: dict[str, list[Instance]] = {}
    for instance in Instance.objects.filter(institution=world.clinic, sop_uid__in=uids):
        found.setdefault(instance.sop_uid, []).append(instance)
    return found


def wait_for_hub(world, gateway: GatewayProcess, files: list[Path]) -> None:
    uids = {sop_uid(p) for p in files}
    assert gateway.proc is not None
    wait_until(
        lambda: set(at_hub(world, uids)) == uids,
        timeout=90,
        what=f"{len(uids)} instances at the hub",
        watch=[gateway.proc],
        interval=0.3,
    )
    wait_until(
        lambda: gateway.status()["files"] == 0,
        timeout=60,
        what="the spool to empty",
        watch=[gateway.proc],
        interval=0.3,
    )


def assert_exactly_once_and_unchanged(
    world, files: list[Path], *, byte_for_byte: bool = True
) -> None:
    """One row per instance, its object hashing to its sha256, its data set the one sent.

    The gateway writes its own file meta (DIMSE does not carry it); the data set after it
    is what the modality put on the wire. storescu re-encodes some files while sending
    (explicit sequence lengths, no trailing padding, OB for encapsulated pixel data), so
    for those the decoded values are compared, the compressed pixel stream byte for byte.
    """
    found = at_hub(world, {sop_uid(p) for p in files})
    for path in files:
        [instance] = found[sop_uid(path)]
        with default_storage.open(instance.object_key) as fp:
            stored = fp.read()
        assert hashlib.sha256(stored).hexdigest() == instance.sha256
        at_hub_ds = pydicom.dcmread(io.BytesIO(stored))
        assert at_hub_ds.file_meta.SourceApplicationEntityTitle == MODALITY_AE
        if byte_for_byte:
            assert data_set_bytes(stored) == data_set_bytes(path.read_bytes()), path.name
            continue
        sent = pydicom.dcmread(path)
        assert at_hub_ds.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert at_hub_ds.PixelData == sent.PixelData, path.name
        sent.pop(0xFFFCFFFC, None)  # Data Set Trailing Padding: dcmtk leaves it out
        # Values, not VRs: dcmtk writes encapsulated pixel data as OB where a file says OW.
        assert [(e.tag, e.value) for e in at_hub_ds] == [(e.tag, e.value) for e in sent], path.name


def test_a_clinic_pc_runs_the_gateway_alone_and_every_instance_arrives_once(
    world, clinic_venv, gateway, tmp_path
):
    assert_installed_alone(clinic_venv, cwd=tmp_path)
    scanner = Scanner(gateway.port)
    echo = scanner.echo()
    assert echo.returncode == 0, echo.stdout + echo.stderr

    series = write_ct(tmp_path / "ct", 12, "GW-E2E-1")
    halves = [series[::2], series[1::2]]  # two modalities' associations at once
    senders = [
        subprocess.Popen(
            [
                "storescu",
                "-aet",
                MODALITY_AE,
                "-aec",
                GATEWAY_AE,
                "127.0.0.1",
                str(gateway.port),
                *map(str, half),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for half in halves
    ]
    for sender in senders:
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output

    samples = []
    for name, option in PYDICOM_FILES.items():
        path = get_testdata_file(name, download=False)
        assert path is not None, name
        samples.append(Path(path))
        scanner.store_ok([Path(path)], option)
    wait_for_hub(world, gateway, series + samples)
    assert_exactly_once_and_unchanged(world, series)
    assert_exactly_once_and_unchanged(world, samples, byte_for_byte=False)
    assert Instance.objects.filter(institution=world.clinic).count() == len(series + samples)

    # A calling AE the hub does not list for this site is refused at association time.
    intruder = scanner.store(series[:1], calling="INTRUDER")
    assert intruder.returncode != 0
    assert "Association Rejected" in intruder.stdout + intruder.stderr
    assert "Calling AE Title Not Recognized" in intruder.stdout + intruder.stderr
    assert scanner.echo(calling="INTRUDER").returncode != 0
    assert gateway.proc is not None
    assert "refused an association from calling AE 'INTRUDER'" in gateway.proc.log()
    assert gateway.status()["files"] == 0


def test_hub_downtime_lost_answers_and_a_killed_gateway_lose_and_duplicate_nothing(
    world, gateway, switch, tmp_path
):
    scanner = Scanner(gateway.port)
    assert gateway.proc is not None

    # The hub is off the network: the scanner is still answered, the files wait.
    switch.down()
    while_down = write_ct(tmp_path / "down", 3, "GW-E2E-2")
    scanner.store_ok(while_down)

    def depth_and_error() -> dict | None:
        status = gateway.status()
        return status if status["files"] == 3 and status["last_error"] else None

    status = wait_until(
        depth_and_error,
        timeout=60,
        what="three spooled files and an error",
        watch=[gateway.proc],
        interval=0.3,
    )
    assert status["bytes"] > sum(len(data_set_bytes(p.read_bytes())) for p in while_down)
    assert status["oldest_age_seconds"] is not None
    assert switch.url in status["last_error"]["hub"]
    assert not at_hub(world, {sop_uid(p) for p in while_down})

    switch.up()
    wait_for_hub(world, gateway, while_down)
    assert_exactly_once_and_unchanged(world, while_down)
    assert gateway.status()["last_success_at"]

    # The hub stores but its answers are lost: the gateway sends again, the hub says
    # "already have it" (identical bytes), and only then is the spool emptied.
    switch.lose_answers()
    answers_lost = write_ct(tmp_path / "lost", 2, "GW-E2E-3")
    scanner.store_ok(answers_lost)
    uids = {sop_uid(p) for p in answers_lost}
    wait_until(
        lambda: set(at_hub(world, uids)) == uids,
        timeout=60,
        what="the hub to store despite lost answers",
        watch=[gateway.proc],
    )
    assert gateway.status()["files"] == 2
    switch.up()
    wait_for_hub(world, gateway, answers_lost)
    assert_exactly_once_and_unchanged(world, answers_lost)

    # Killed outright with files spooled: the next start replays them.
    switch.down()
    before_kill = write_ct(tmp_path / "kill", 3, "GW-E2E-4")
    scanner.store_ok(before_kill)
    wait_until(
        lambda: gateway.status()["files"] == 3,
        timeout=60,
        what="three spooled files",
        watch=[gateway.proc],
    )
    gateway.proc.kill()  # SIGKILL: no goodbye, no flush
    assert gateway.proc.popen.returncode == -signal.SIGKILL
    switch.up()
    restarted = gateway.start()
    wait_for_hub(world, gateway, before_kill)
    assert "3 instance(s) wait in the spool from before" in restarted.log()
    assert_exactly_once_and_unchanged(world, before_kill)

    everything = while_down + answers_lost + before_kill
    assert Instance.objects.filter(institution=world.clinic).count() == len(everything)
    status = gateway.status()
    assert (status["files"], status["rejected"]) == (0, 0)


def test_a_retired_ultrasound_image_reaches_the_hub_and_a_wrong_called_ae_is_refused(
    world, gateway, tmp_path
):
    """An old township ultrasound machine: the retired US Image Storage class, sent by
    storescu proposing only that class (-R), through the installed gateway to the hub."""
    from referrals.models import Study

    ultrasound = write_ct(tmp_path / "us", 1, "GW-E2E-US")
    for path in ultrasound:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6"
        ds.Modality = "US"
        ds.save_as(path, enforce_file_format=True)
    scanner = Scanner(gateway.port)

    wrong = dcmtk(
        "storescu",
        "-R",
        "-aet",
        MODALITY_AE,
        "-aec",
        "WRONG",
        "127.0.0.1",
        str(gateway.port),
        *ultrasound,
    )
    assert wrong.returncode != 0
    assert "Called AE Title Not Recognized" in wrong.stdout + wrong.stderr
    assert gateway.proc is not None
    assert "it called AE title 'WRONG'" in gateway.proc.log()

    scanner.store_ok(ultrasound, "-R")
    wait_for_hub(world, gateway, ultrasound)
    assert_exactly_once_and_unchanged(world, ultrasound)
    [instance] = at_hub(world, {sop_uid(ultrasound[0])})[sop_uid(ultrasound[0])]
    assert instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.6"
    assert Study.objects.get(pk=instance.study_id).modalities == "US"
