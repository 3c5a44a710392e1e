"""Probabilistic matching of patient demographics with recordlinkage (pandas).

Candidate pairs come from blocking (the same birth year, or the same name) so the work grows
with the block sizes, not with the square of the alliance's patients. Each pair is compared
field by field (recordlinkage's Jaro-Winkler on pinyin names, both ways round; its date
comparison, which scores a day/month transposition; Levenshtein on the date's digits for a
typo; sex) and the similarities are weighed into one score in [0, 1]:

- at or above `UPPER` the records are linked as one person;
- from `LOWER` to `UPPER` the pair is proposed to a person for review;
- below `LOWER` nothing is recorded.

Two valid resident identity numbers that differ veto a match whatever the demographics say.
The weights and thresholds were set on the synthetic alliance of bench/identity (see
docs/patient-identity.md for its precision and recall).
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import recordlinkage

from .names import name_swapped

# recordlinkage logs every comparison at INFO: the worker's log is not the place for it.
logging.getLogger("recordlinkage").setLevel(logging.WARNING)

UPPER = 0.93
LOWER = 0.80
WEIGHTS = {"name": 0.55, "birth": 0.30, "sex": 0.15}
# A missing birth date or sex neither confirms nor refutes: half the field's weight.
MISSING = 0.5


@dataclass(frozen=True)
class PatientRecord:
    """What the linker knows of one patient record."""

    pk: int
    name: str  # the match form (names.name_match_form)
    birth_date: dt.date | None
    sex: str
    resident_key: str = ""


@dataclass(frozen=True)
class PairScore:
    a: int
    b: int
    score: float
    features: dict[str, float]


def records_frame(records: Iterable[PatientRecord]) -> pd.DataFrame:
    rows = [
        {
            "pk": r.pk,
            "name": r.name or None,
            "name_swapped": name_swapped(r.name) or None,
            "birth": pd.Timestamp(r.birth_date) if r.birth_date else pd.NaT,
            "birth_text": r.birth_date.strftime("%Y%m%d") if r.birth_date else None,
            "birth_year": r.birth_date.year if r.birth_date else None,
            "sex": (r.sex or "").upper()[:1] or None,
            "resident": r.resident_key or None,
        }
        for r in records
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "pk",
            "name",
            "name_swapped",
            "birth",
            "birth_text",
            "birth_year",
            "sex",
            "resident",
        ],
    )
    return frame.set_index("pk", drop=False)


def candidate_pairs(frame: pd.DataFrame) -> pd.MultiIndex:
    """Pairs of the frame's records sharing a birth year or a name (recordlinkage blocking)."""
    indexer = recordlinkage.Index()
    indexer.block("birth_year")
    indexer.block("name")
    indexer.block(left_on="name", right_on="name_swapped")
    pairs = indexer.index(frame.dropna(subset=["name"]).astype({"birth_year": "object"}))
    # Deduplication returns each unordered pair once; make the smaller id first.
    ordered = {(min(a, b), max(a, b)) for a, b in pairs if a != b}
    return pd.MultiIndex.from_tuples(sorted(ordered), names=["a", "b"])


def pairs_score(frame: pd.DataFrame, pairs: pd.MultiIndex) -> list[PairScore]:
    """The score of every pair (both ids must be in `frame`)."""
    if len(pairs) == 0:
        return []
    compare = recordlinkage.Compare()
    compare.string("name", "name", method="jarowinkler", label="name")
    compare.string("name", "name_swapped", method="jarowinkler", label="name_swapped")
    compare.date("birth", "birth", swap_month_day=0.5, label="birth_date")
    compare.string("birth_text", "birth_text", method="levenshtein", label="birth_digits")
    compare.exact("sex", "sex", label="sex")
    with warnings.catch_warnings():
        # recordlinkage's date comparison writes 0.5 into an integer column (pandas warns).
        warnings.simplefilter("ignore", FutureWarning)
        features = compare.compute(pairs, frame)
    left = frame.loc[pairs.get_level_values(0)]
    right = frame.loc[pairs.get_level_values(1)]
    birth_missing = (left["birth"].isna().to_numpy()) | (right["birth"].isna().to_numpy())
    sex_missing = (left["sex"].isna().to_numpy()) | (right["sex"].isna().to_numpy())
    resident_conflict = (
        left["resident"].notna().to_numpy()
        & right["resident"].notna().to_numpy()
        & (left["resident"].to_numpy() != right["resident"].to_numpy())
    )
    scores: list[PairScore] = []
    for n, (a, b) in enumerate(pairs):
        row = features.iloc[n]
        # A swapped family/given name is a common entry error, slightly less sure than equal.
        name = max(float(row["name"]), 0.95 * float(row["name_swapped"]))
        # A one-digit typo in the date: the power keeps it well below an equal date, so
        # the same name and a near date alone go to review, not to a link.
        birth = (
            MISSING
            if birth_missing[n]
            else max(float(row["birth_date"]), float(row["birth_digits"]) ** 4)
        )
        sex = MISSING if sex_missing[n] else float(row["sex"])
        score = WEIGHTS["name"] * name + WEIGHTS["birth"] * birth + WEIGHTS["sex"] * sex
        if resident_conflict[n]:
            score = 0.0
        scores.append(
            PairScore(
                a=int(a),
                b=int(b),
                score=round(score, 4),
                features={"name": round(name, 3), "birth": round(birth, 3), "sex": sex},
            )
        )
    return scores


def score_against(record: PatientRecord, candidates: Sequence[PatientRecord]) -> list[PairScore]:
    """The score of `record` against each candidate (one patient's run after a study)."""
    others = [c for c in candidates if c.pk != record.pk]
    if not others or not record.name:
        return []
    frame = records_frame([record, *others])
    pairs = pd.MultiIndex.from_tuples(
        [(min(record.pk, c.pk), max(record.pk, c.pk)) for c in others], names=["a", "b"]
    )
    return pairs_score(frame, pairs)


def all_pairs_score(records: Sequence[PatientRecord]) -> list[PairScore]:
    """Every blocked pair of `records` scored (a whole alliance's rebuild)."""
    frame = records_frame(records)
    return pairs_score(frame, candidate_pairs(frame))
