"""A big imaging index for QIDO benchmarks: 200 sites, 100,000 studies, written with COPY.

Rows only (no objects in storage): QIDO reads the index, never the files. Distributions
are meant to look like an alliance: a few big sites and a long tail of small ones, dates
over two years, the modality mix of grassroots imaging, Chinese names with their pinyin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from bench.harness.names import person_name
from referrals.archive.ingest import name_search_form
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import Instance, Patient, Series, Study
from tenants.models import Institution, InstitutionKind

SITE_PREFIX = "bench-q-"
# (modalities in the study, weight, series per study, instances per series, description)
MODALITY_MIX = [
    ("CT", 30, (1, 3), 250, "CT CHEST"),
    ("DX", 25, (1, 2), 1, "CHEST PA"),
    ("CR", 8, (1, 2), 1, "KNEE AP/LAT"),
    ("US", 15, (1, 1), 20, "ABDOMEN US"),
    ("MR", 10, (2, 4), 120, "MR BRAIN"),
    ("MG", 5, (1, 1), 4, "MAMMO SCREEN"),
    ("CT\\SR", 4, (2, 2), 200, "CT ABDOMEN + REPORT"),
    ("DX\\SR", 3, (2, 2), 1, "CHEST + REPORT"),
]
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "SR": "1.2.840.10008.5.1.4.1.1.88.22",
}


def site_codes(sites: int) -> list[str]:
    return [f"{SITE_PREFIX}{index:03d}" for index in range(sites)]


def seeded_studies() -> int:
    return Study.objects.filter(institution__code__startswith=SITE_PREFIX).count()


def _next_ids(model: type[models.Model], count: int) -> int:
    """Reserve `count` primary keys; returns the first."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608
        first = int(cursor.fetchone()[0]) + 1
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, first + count - 1]
        )
    return first


def _copy(model: type[models.Model], rows: Iterable[dict[str, Any]]) -> int:
    """COPY rows (dicts by attname) into the model's table; missing fields get defaults."""
    fields = list(model._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    defaults = {f.attname: f.get_default() for f in fields}
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        with raw.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                values = []
                for f in fields:
                    value = row.get(f.attname, defaults[f.attname])
                    if isinstance(f, models.JSONField):
                        value = json.dumps(value, ensure_ascii=False)
                    values.append(value)
                copy.write_row(values)
                count += 1
    return count


def _metadata(
    study: dict[str, Any], series: dict[str, Any], instance: dict[str, Any], patient: dict[str, Any]
) -> dict[str, Any]:
    def el(vr: str, *values: Any) -> dict[str, Any]:
        return {"vr": vr, "Value": list(values)} if values else {"vr": vr}

    groups = dict(zip(("Alphabetic", "Ideographic"), patient["name"].split("="), strict=False))
    return {
        "00080005": el("CS", "ISO_IR 192"),
        "00080016": el("UI", instance["sop_class_uid"]),
        "00080018": el("UI", instance["sop_uid"]),
        "00080020": el("DA", study["study_date"].strftime("%Y%m%d")),
        "00080030": el("TM", study["study_time"]),
        "00080050": el("SH", study["accession_number"]),
        "00080060": el("CS", series["modality"]),
        "00081030": el("LO", study["description"]),
        "0008103E": el("LO", series["description"]),
        "00100010": el("PN", groups),
        "00100020": el("LO", patient["patient_id"]),
        "00100030": el("DA", patient["birth_date"].strftime("%Y%m%d")),
        "00100040": el("CS", patient["sex"]),
        "0020000D": el("UI", study["study_uid"]),
        "0020000E": el("UI", series["series_uid"]),
        "00200011": el("IS", series["series_number"]),
        "00200013": el("IS", 1),
        "00280010": el("US", instance["rows"]),
        "00280011": el("US", instance["columns"]),
    }


@transaction.atomic
def seed(
    *,
    studies: int,
    sites: int = 200,
    days: int = 730,
    seed_value: int = 42,
    say: Callable[[str], None] = lambda _m: None,
) -> None:
    """Write `studies` studies over `sites` sites (made if missing)."""
    # Seeded by what is already there, so a top-up adds new people, not the same ones again.
    rng = random.Random(seed_value + seeded_studies())  # noqa: S311 - synthetic, not secrets
    institutions = []
    for code in site_codes(sites):
        institution, _created = Institution.objects.get_or_create(
            code=code,
            defaults={
                "name": f"基准卫生院{code[-3:]}",
                "name_en": f"Bench site {code}",
                "kind": InstitutionKind.TOWNSHIP_CENTRE,
                "region_code": "421000",
            },
        )
        institutions.append(institution)
    weights = [1 / (rank + 1) for rank in range(sites)]  # Zipf: a few big sites, a long tail
    site_of_study = rng.choices(range(sites), weights=weights, k=studies)
    mix_weights = [m[1] for m in MODALITY_MIX]
    today = timezone.localdate()
    now = timezone.now()

    patients: list[dict[str, Any]] = []
    by_site: dict[int, list[dict[str, Any]]] = {}
    study_rows: list[dict[str, Any]] = []
    series_rows: list[dict[str, Any]] = []
    instance_rows: list[dict[str, Any]] = []
    patient_id0 = _next_ids(Patient, studies)
    study_id0 = _next_ids(Study, studies)
    for number, site in enumerate(site_of_study):
        institution = institutions[site]
        pool = by_site.setdefault(site, [])
        if pool and rng.random() < 0.3:  # a returning patient
            patient = rng.choice(pool)
        else:
            pn, _surname, _given = person_name(rng)
            patient = {
                "id": patient_id0 + len(patients),
                "institution_id": institution.pk,
                "patient_id": f"{site:03d}P{patient_id0 + len(patients):08d}",
                "issuer": "",
                "name": pn,
                "birth_date": dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30000)),
                "sex": rng.choice("MF"),
                "created_at": now,
            }
            patient["patient_key"] = hashlib.sha256(
                f"{institution.code}|{patient['patient_id']}".encode()
            ).hexdigest()
            patients.append(patient)
            pool.append(patient)
        modalities, _w, (low, high), per_series, description = rng.choices(
            MODALITY_MIX, weights=mix_weights
        )[0]
        study_date = today - dt.timedelta(days=rng.randrange(days))
        study = {
            "id": study_id0 + number,
            "institution_id": institution.pk,
            "patient_id": patient["id"],
            "study_uid": f"{HUB_UID_ROOT}9.{site}.{study_id0 + number}",
            "study_date": study_date,
            "study_time": f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00",
            "accession_number": f"A{site:03d}{study_id0 + number:09d}",
            "study_id": str(number % 10000),
            "description": description,
            "referring_physician_name": "Li^Ming=李^明",
            "patient_name": patient["name"],
            "patient_name_search": name_search_form(patient["name"]),
            "pid": patient["patient_id"],
            "patient_key": patient["patient_key"],
            "modalities": modalities,
            "body_parts": "",
            "size_bytes": 0,
            "received_at": now,
            "last_received_at": now,
            "stable_at": now,
        }
        codes = modalities.split("\\")
        count = rng.randint(low, high)
        study["num_series"], study["num_instances"] = count, 0
        for index in range(count):
            modality = (
                codes[min(index, len(codes) - 1)]
                if len(codes) > 1 and index == count - 1
                else codes[0]
            )
            series = {
                "institution_id": institution.pk,
                "study_id": study["id"],
                "series_uid": f"{study['study_uid']}.{index + 1}",
                "modality": modality,
                "series_number": index + 1,
                "description": f"{modality} series {index + 1}",
                "body_part": "",
                "num_instances": 1 if modality == "SR" else per_series,
                "thumbnail_key": "",
            }
            series_rows.append(series)
            study["num_instances"] += series["num_instances"]
            study["size_bytes"] += series["num_instances"] * 525_000
            instance_rows.append(
                {"study": study, "series": series, "patient": patient, "modality": modality}
            )
        study_rows.append(study)

    series_id0 = _next_ids(Series, len(series_rows))
    for offset, series in enumerate(series_rows):
        series["id"] = series_id0 + offset
    instance_id0 = _next_ids(Instance, len(instance_rows))
    instances = []
    for offset, item in enumerate(instance_rows):
        series, study, patient = item["series"], item["study"], item["patient"]
        size = 1024 if item["modality"] == "SR" else 512
        instance = {
            "id": instance_id0 + offset,
            "institution_id": study["institution_id"],
            "study_id": study["id"],
            "series_id": series["id"],
            "sop_uid": f"{series['series_uid']}.1",
            "sop_class_uid": SOP_CLASS.get(item["modality"], SOP_CLASS["CT"]),
            "instance_number": 1,
            "transfer_syntax_uid": "1.2.840.10008.1.2.1",
            "rows": None if item["modality"] == "SR" else size,
            "columns": None if item["modality"] == "SR" else size,
            "number_of_frames": 1,
            "size_bytes": 525_000,
            "sha256": "0" * 64,
            "object_id": uuid.UUID(int=rng.getrandbits(128)),
            "received_via": "stow",
            "created_at": now,
        }
        instance["metadata"] = _metadata(study, series, instance, patient)
        instances.append(instance)
    say(
        f"copying {len(patients)} patients, {len(study_rows)} studies, {len(series_rows)} "
        f"series, {len(instances)} instances ..."
    )
    _copy(Patient, patients)
    _copy(Study, study_rows)
    _copy(Series, series_rows)
    _copy(Instance, instances)
    with connection.cursor() as cursor:
        for model in (Patient, Study, Series, Instance):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
