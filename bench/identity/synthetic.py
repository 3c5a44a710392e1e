"""A synthetic alliance's patient records, with the person each belongs to (ground truth).

Persons visit one to three of the sites. Each visit is a record as a site's registration
would make it, with the errors seen in the field: the name in hanzi, in pinyin, or both; a
typo in the given name; family and given name swapped; a birth date missing, with day and
month transposed, or with a wrong digit; the sex missing. Some persons carry a resident
identity number (18 digits, sometimes the old 15) that some sites use as the patient ID.
Two sites share the county hospital's registration system: their IDs (and issuer) agree.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from stdnum.cn import ric

from bench.harness.names import GIVEN, SURNAME_WEIGHTS, SURNAMES

# Region codes that stdnum knows (so the numbers pass its birth-place check).
REGIONS = ["110105", "110108", "310104", "440106", "420102", "510107", "360426"]
SHARED_ISSUER = "COUNTY-HIS"


@dataclass(frozen=True)
class Person:
    index: int
    surname: tuple[str, str]  # (hanzi, pinyin)
    given: tuple[tuple[str, str], ...]
    birth_date: dt.date
    sex: str
    resident_id: str  # "" for none


@dataclass(frozen=True)
class Record:
    person: int
    site: int
    patient_id: str
    issuer: str
    name: str  # DICOM PN
    birth_date: dt.date | None
    sex: str


@dataclass
class SyntheticAlliance:
    sites: int
    persons: list[Person]
    records: list[Record] = field(default_factory=list)

    def true_pairs(self) -> int:
        counts: dict[int, int] = {}
        for r in self.records:
            counts[r.person] = counts.get(r.person, 0) + 1
        return sum(n * (n - 1) // 2 for n in counts.values())


def resident_number(rng: random.Random, birth: dt.date, sex: str) -> str:
    order = rng.randrange(0, 999)
    if (order % 2 == 1) != (sex == "M"):  # odd order codes for men
        order = (order + 1) % 1000
    body = f"{rng.choice(REGIONS)}{birth:%Y%m%d}{order:03d}"
    return body + ric.calc_check_digit(body + "0")


def _person(rng: random.Random, index: int, with_resident_id: float) -> Person:
    surname = rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
    given = tuple(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2, 2))))
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(0, 80 * 365))
    sex = rng.choice("MF")
    number = resident_number(rng, birth, sex) if rng.random() < with_resident_id else ""
    return Person(index, surname, given, birth, sex, number)


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 2:
        return text
    at = rng.randrange(1, len(text))
    kind = rng.random()
    if kind < 0.4:  # a letter replaced
        return text[:at] + rng.choice("aeinoughz") + text[at + 1 :]
    if kind < 0.7:  # a letter dropped
        return text[:at] + text[at + 1 :]
    return text[: at - 1] + text[at] + text[at - 1] + text[at + 1 :]  # two letters swapped


def _name(rng: random.Random, p: Person, errors: float) -> str:
    family_h, family_p = p.surname
    given = list(p.given)
    if rng.random() < errors:  # one character of the given name entered wrongly
        at = rng.randrange(len(given))
        given[at] = rng.choice(GIVEN)
    given_h = "".join(h for h, _ in given)
    given_p = "".join(py for _, py in given).capitalize()
    if rng.random() < errors:
        given_p = _typo(rng, given_p.lower()).capitalize()
    swapped = rng.random() < errors
    form = rng.random()
    if form < 0.4:
        pinyin = f"{given_p}^{family_p}" if swapped else f"{family_p}^{given_p}"
        return f"{pinyin}={family_h}^{given_h}"
    if form < 0.65:
        return f"{family_h}{given_h}"
    return f"{given_p}^{family_p}" if swapped else f"{family_p}^{given_p}"


def _birth(rng: random.Random, birth: dt.date, errors: float) -> dt.date | None:
    draw = rng.random()
    if draw < errors:
        return None
    if draw < 2 * errors and birth.day <= 12 and birth.day != birth.month:
        return birth.replace(month=birth.day, day=birth.month)
    if draw < 2.6 * errors:
        try:
            return birth.replace(year=birth.year + rng.choice((-10, -1, 1, 10)))
        except ValueError:
            return birth
    return birth


def alliance_generate(
    *,
    persons: int = 2000,
    sites: int = 5,
    seed: int = 16,
    errors: float = 0.05,
    with_resident_id: float = 0.3,
) -> SyntheticAlliance:
    """A synthetic alliance; the same seed gives the same records."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible synthetic world, not a secret)
    people = [_person(rng, n, with_resident_id) for n in range(persons)]
    alliance = SyntheticAlliance(sites=sites, persons=people)
    for p in people:
        visited = rng.sample(range(sites), rng.choices((1, 2, 3), weights=(4, 4, 2))[0])
        for site in visited:
            issuer = SHARED_ISSUER if site < 2 else ""
            if p.resident_id and rng.random() < 0.5:
                pid = p.resident_id
                if p.birth_date.year < 1999 and rng.random() < 0.2:
                    pid = pid[:6] + pid[8:17]  # the old 15-digit form
            elif issuer:
                pid = f"H{p.index:06d}"
            else:
                pid = f"S{site}-{p.index:06d}"
            if rng.random() < errors and not issuer:
                # The site's ID is missing: the scanner made up a temporary one.
                pid = f"T{rng.randrange(10**9):09d}"
            alliance.records.append(
                Record(
                    person=p.index,
                    site=site,
                    patient_id=pid,
                    issuer=issuer,
                    name=_name(rng, p, errors),
                    birth_date=_birth(rng, p.birth_date, errors),
                    sex="" if rng.random() < errors / 2 else p.sex,
                )
            )
    return alliance
