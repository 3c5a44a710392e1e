"""The benchmark corpus: synthetic 512x512 CT studies written once to a cache folder, plus
pydicom's own test files (one of each SOP Instance UID)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.uid import generate_uid

from bench.harness.names import person_name
from referrals.archive.synthetic import HUB_UID_ROOT, SyntheticPatient, ct_series, to_bytes

CORPUS_VERSION = 1


def cache_root() -> Path:
    """Where corpora are kept between runs: $HUB_BENCH_CACHE, else /tmp/hub-bench-cache."""
    return Path(os.environ.get("HUB_BENCH_CACHE", "/tmp/hub-bench-cache"))  # noqa: S108


def ct_corpus(
    *,
    studies: int,
    per_study: int,
    size: int = 512,
    root: Path | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> list[Path]:
    """`studies` CT studies of `per_study` slices each (size x size, 16-bit), made once.

    The manifest is written last, so an interrupted generation is redone, never half-used.
    """
    folder = (root or cache_root()) / f"ct-{studies}x{per_study}-{size}-v{CORPUS_VERSION}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        names = json.loads(manifest.read_text())["files"]
        paths = [folder / n for n in names]
        if all(p.exists() for p in paths):
            return paths
    say(
        f"writing the CT corpus ({studies} x {per_study} slices of {size}x{size}) to "
        f"{folder} (once) ..."
    )
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{studies}-{per_study}-{size}")  # noqa: S311 - not for secrets
    names = []
    for study in range(studies):
        pn, _surname, _given = person_name(rng)
        patient = SyntheticPatient(
            f"BENCH{study:05d}", pn, sex=rng.choice("MF"), birth_date="19610203"
        )
        study_uid = generate_uid(prefix=HUB_UID_ROOT)
        for ds in ct_series(
            patient=patient,
            count=per_study,
            study_uid=study_uid,
            size=size,
            accession=f"BA{study:08d}",
            study_date=dt.date(2025, 1, 1) + dt.timedelta(days=study),
        ):
            name = f"s{study:03d}/{ds.InstanceNumber:05d}.dcm"
            (folder / name).parent.mkdir(exist_ok=True)
            (folder / name).write_bytes(to_bytes(ds))
            names.append(name)
    manifest.write_text(json.dumps({"files": names}))
    return [folder / n for n in names]


def pydicom_test_files() -> list[Path]:
    """pydicom's bundled test files that carry the UIDs an archive needs, each SOP Instance
    UID once (several of them are one image in several transfer syntaxes)."""
    folder = Path(pydicom.data.__file__).parent / "test_files"
    seen: set[str] = set()
    found = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids = [
                str(ds.get(k, ""))
                for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID")
            ]
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
        except Exception:  # noqa: S112 - a file pydicom cannot read is not part of it
            continue
        if not all(uids) or not syntax or uids[0] in seen:
            continue
        seen.add(uids[0])
        found.append(path)
    return found


def total_bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def uncompressed(paths: list[Path]) -> list[Path]:
    """The files in little-endian native encoding: what storescu sends without per-file
    transfer syntax options (it cannot propose each compressed file's own syntax)."""
    found = []
    for path in paths:
        meta = pydicom.filereader.read_file_meta_info(path)
        if str(meta.get("TransferSyntaxUID", "")) in UNCOMPRESSED:
            found.append(path)
    return found


def interleaved(paths: list[Path], chunk: int) -> list[Path]:
    """The same files reordered so that consecutive chunks come from different studies
    (folders): concurrent clients then store into different studies, not all into one."""
    by_study: dict[Path, list[Path]] = {}
    for path in paths:
        by_study.setdefault(path.parent, []).append(path)
    queues = [
        [files[i : i + chunk] for i in range(0, len(files), chunk)] for files in by_study.values()
    ]
    out: list[Path] = []
    while any(queues):
        for queue in queues:
            if queue:
                out += queue.pop(0)
    return out
