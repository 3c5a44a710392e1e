"""A region-sized world for the referral benchmarks: 200 sites, 1,000,000 studies, their history.

`seed_scale()` makes the alliances with the ORM (bench/scale/world.py), then writes
the bulk in PostgreSQL itself with INSERT ... SELECT over generate_series: people (one
patient key each, so a person seen at a clinic and later at the county hospital has priors
there), studies spread over two years and skewed towards the big sites, and a referral for
nearly every grassroots study (a share of the county ones) with its whole history: events,
the studies it carries, the grants it gave. Most are delivered or acknowledged; a few
thousand are open (routed, claimed, reporting) across the pools, some warned or breached.
Rows only: no series, instances or pixels (the worklist, routing and claims read none).

All of it is one transaction: a database holds the whole world or none of it, so a second
run refuses instead of doubling it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from bench.harness.names import GIVEN, SURNAMES
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import Referral, Study

from .world import PREFIX, ScaleWorld, world_create, world_exists

PEOPLE_PER_STUDY = 0.6  # a person has 1.7 studies on average: priors for many
UP_VISITS = 0.15  # studies a clinic's patient has at its county (a county's at the centre)
DAYS = 730


class SeedRefusedError(RuntimeError):
    """The database already holds the scale world."""


@dataclass
class SeedSummary:
    studies: int
    referrals: int
    open_referrals: int
    events: int
    grants: int
    seconds: float


def seeded_studies() -> int:
    return Study.objects.filter(institution__code__startswith=PREFIX).count()


def default_open(studies: int) -> int:
    """A few thousand open cases at full scale; proportionally fewer on a small seed."""
    return max(20, min(3000, studies // 300))


# (cumulative share, modalities, body part, description, series, instances)
MIX = [
    (0.15, "CT", "CHEST", "CT CHEST", 3, 600),
    (0.24, "CT", "HEAD", "CT HEAD", 2, 300),
    (0.30, "CT", "ABDOMEN", "CT ABDOMEN", 3, 700),
    (0.48, "DX", "CHEST", "CHEST PA", 1, 1),
    (0.55, "DX", "KNEE", "KNEE AP/LAT", 1, 2),
    (0.63, "CR", "HAND", "HAND PA", 1, 2),
    (0.78, "US", "ABDOMEN", "ABDOMEN US", 1, 20),
    (0.84, "MR", "HEAD", "MR BRAIN", 4, 400),
    (0.88, "MR", "SPINE", "MR L-SPINE", 3, 300),
    (0.93, "MG", "BREAST", "MAMMO SCREEN", 1, 4),
    (0.97, "CT\\SR", "ABDOMEN", "CT ABDOMEN + REPORT", 2, 400),
    (1.0001, "DX\\SR", "CHEST", "CHEST + REPORT", 2, 2),
]
RETURN_REASONS = [
    "motion_artefact",
    "incomplete_coverage",
    "wrong_protocol",
    "poor_image_quality",
    "missing_history",
]


def _exec(sql: str, params: Any = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


@contextmanager
def _bulk_load(*tables: str) -> Iterator[None]:
    """Load `tables` as pg_restore does: without their secondary indexes and foreign keys,
    which are built again afterwards in one pass each (a row-at-a-time trigram index and
    foreign-key check would make the million-row inserts take many times longer).
    Inside the seed's transaction, so a failure leaves the schema as it was."""
    with connection.cursor() as cursor:
        # Checks the ORM's inserts left deferred must run before a constraint is dropped.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index AS i
            WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
            """,
            [list(tables)],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            """
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])
            """,
            [list(tables)],
        )
        foreign_keys = cursor.fetchall()
        for table, name, _definition in foreign_keys:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            cursor.execute(f"DROP INDEX {name}")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for _name, definition in indexes:
            cursor.execute(definition)
        for table, name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def _tables(world: ScaleWorld) -> None:
    """The world as temporary tables the bulk statements join with."""
    _exec(
        "CREATE TEMP TABLE scale_site (rank int PRIMARY KEY, institution_id bigint, "
        "alliance_id bigint, tier text, upper_id bigint) ON COMMIT DROP"
    )
    central = {s.alliance_id: s.institution_id for s in world.sites if s.tier == "central"}
    counties: dict[int, list[int]] = {}
    for s in world.sites:
        if s.tier == "county":
            counties.setdefault(s.alliance_id, []).append(s.institution_id)
    rows, clinic_no = [], dict.fromkeys(central, 0)
    for rank, s in enumerate(world.sites):
        upper = central[s.alliance_id]
        if s.tier == "grassroots":
            mine = counties[s.alliance_id]
            upper = mine[clinic_no[s.alliance_id] % len(mine)]
            clinic_no[s.alliance_id] += 1
        elif s.tier == "central":
            upper = s.institution_id
        rows.append((rank, s.institution_id, s.alliance_id, s.tier, upper))
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO scale_site VALUES (%s, %s, %s, %s, %s)", rows)
        cursor.execute(
            "CREATE TEMP TABLE scale_pool (alliance_id bigint, key text, "
            "pool_id bigint, institution_id bigint, readers bigint[]) ON COMMIT DROP"
        )
        cursor.executemany(
            "INSERT INTO scale_pool VALUES (%s, %s, %s, %s, %s)",
            [
                (
                    p.alliance_id,
                    p.key if p.key != "county" else f"county:{p.institution_id}",
                    p.pool_id,
                    p.institution_id,
                    p.readers,
                )
                for p in world.pools
            ],
        )
        cursor.execute(
            "CREATE TEMP TABLE scale_mix (lo float, hi float, modalities text, "
            "body text, description text, series int, instances int) ON COMMIT DROP"
        )
        lo = 0.0
        mix: list[tuple[Any, ...]] = []
        for hi, modalities, body, description, series, instances in MIX:
            mix.append((lo, hi, modalities, body, description, series, instances))
            lo = hi
        cursor.executemany("INSERT INTO scale_mix VALUES (%s, %s, %s, %s, %s, %s, %s)", mix)


def _people_and_studies(studies: int, sites: int) -> None:
    persons = max(1, int(studies * PEOPLE_PER_STUDY))
    params = {
        "persons": persons,
        "studies": studies,
        "sites": sites,
        "days": DAYS,
        "up": UP_VISITS,
        "tz": settings.TIME_ZONE,
        "uid": f"{HUB_UID_ROOT}8.",
        "sur_py": [p for _h, p in SURNAMES],
        "sur_hz": [h for h, _p in SURNAMES],
        "giv_py": [p for _h, p in GIVEN],
        "giv_hz": [h for h, _p in GIVEN],
    }
    # A person: home site (skewed to the big ones), name (common surnames first), birth.
    _exec(
        """
        CREATE TEMP TABLE scale_person ON COMMIT DROP AS
        SELECT p AS person, floor(%(sites)s * power(random(), 2))::int AS home_rank,
               1 + floor(cardinality(%(sur_py)s::text[]) * power(random(), 2))::int AS s,
               1 + floor(random() * cardinality(%(giv_py)s::text[]))::int AS g1,
               1 + floor(random() * (cardinality(%(giv_py)s::text[]) + 15))::int AS g2,
               CASE WHEN random() < 0.5 THEN 'M' ELSE 'F' END AS sex,
               DATE '1930-01-01' + floor(random() * 30000)::int AS birth,
               encode(sha256(('scale-person-' || p)::bytea), 'hex') AS patient_key
        FROM generate_series(1, %(persons)s) AS p""",
        params,
    )
    _exec("ALTER TABLE scale_person ADD COLUMN name text")
    _exec(
        """
        UPDATE scale_person SET name =
            (%(sur_py)s::text[])[s] || '^' || initcap((%(giv_py)s::text[])[g1]
              || coalesce(lower((%(giv_py)s::text[])[g2]), ''))
            || '=' || (%(sur_hz)s::text[])[s] || '^' || (%(giv_hz)s::text[])[g1]
            || coalesce((%(giv_hz)s::text[])[g2], '')""",
        params,
    )
    _exec("ALTER TABLE scale_person ADD PRIMARY KEY (person)")
    # A study: one of the people, at their home site or (some) one tier up; a time in the
    # last two years; a modality and body part from the mix.
    _exec(
        """
        CREATE TEMP TABLE scale_plan ON COMMIT DROP AS
        SELECT g.n, g.person, CASE WHEN g.r_up < %(up)s THEN h.upper_id
                                   ELSE h.institution_id END AS institution_id,
               g.at, g.r_mix
        FROM (SELECT n, 1 + floor(random() * %(persons)s)::int AS person, random() AS r_up,
                     random() AS r_mix,
                     now() - random() * make_interval(days => %(days)s) AS at
              FROM generate_series(1, %(studies)s) AS n) AS g
        JOIN scale_person AS p USING (person)
        JOIN scale_site AS h ON h.rank = p.home_rank""",
        params,
    )
    _exec(
        """
        INSERT INTO referrals_patient (patient_id, issuer, name, birth_date, sex, patient_key,
                                       created_at, institution_id)
        SELECT 'P' || lpad(p.person::text, 9, '0'), '', p.name, p.birth, p.sex, p.patient_key,
               now(), v.institution_id
        FROM (SELECT DISTINCT institution_id, person FROM scale_plan) AS v
        JOIN scale_person AS p USING (person)""",
        params,
    )
    for table in ("referrals_patient", "scale_plan", "scale_person"):
        _exec(f"ANALYZE {table}")
    _exec(
        """
        INSERT INTO referrals_study (
            study_uid, study_date, study_time, accession_number, study_id, description,
            referring_physician_name, patient_name, patient_name_search, pid, patient_key,
            modalities, body_parts, num_series, num_instances, size_bytes, received_at,
            last_received_at, stable_at, institution_id, patient_id)
        SELECT %(uid)s || g.n, (g.at AT TIME ZONE %(tz)s)::date,
               to_char(g.at AT TIME ZONE %(tz)s, 'HH24MISS'), 'S' || lpad(g.n::text, 9, '0'),
               (g.n %% 10000)::text, m.description, 'Li^Ming=李^明', pe.name, upper(pe.name),
               pa.patient_id, pe.patient_key, m.modalities, m.body, m.series, m.instances,
               m.instances::bigint * 525000, g.at, g.at + interval '1 minute',
               g.at + interval '2 minutes', g.institution_id, pa.id
        FROM scale_plan AS g
        JOIN scale_person AS pe USING (person)
        JOIN referrals_patient AS pa
          ON pa.institution_id = g.institution_id AND pa.issuer = ''
         AND pa.patient_id = 'P' || lpad(g.person::text, 9, '0')
        JOIN scale_mix AS m ON g.r_mix >= m.lo AND g.r_mix < m.hi
        ORDER BY g.at""",
        params,
    )


def _referrals(open_cases: int) -> None:
    """A referral for nearly every clinic study and some county ones, with its history."""
    params = {"open": open_cases, "reasons": RETURN_REASONS}
    _exec(
        """
        CREATE TEMP TABLE scale_ref ON COMMIT DROP AS
        SELECT st.id AS study_id, st.institution_id AS source_id, ss.alliance_id, ss.tier,
               ss.upper_id, st.modalities, st.body_parts,
               st.received_at + interval '3 minutes' AS requested_at,
               random() AS r_priority, random() AS r_status, random() AS r_claim,
               random() AS r_report, random() AS r_kind, false AS is_open
        FROM referrals_study AS st JOIN scale_site AS ss USING (institution_id)
        WHERE (ss.tier = 'grassroots' AND random() < 0.97)
           OR (ss.tier = 'county' AND random() < 0.3)""",
        params,
    )
    # The newest cases are still open; their clocks run from now (stat ones are young).
    _exec(
        """
        UPDATE scale_ref SET is_open = true,
            requested_at = now() - CASE WHEN r_priority < 0.05 THEN random() * interval '40 min'
                                        WHEN r_priority < 0.25 THEN random() * interval '150 min'
                                        ELSE random() * interval '30 hours' END
        WHERE study_id IN (SELECT study_id FROM scale_ref ORDER BY requested_at DESC
                           LIMIT %(open)s)""",
        params,
    )
    _exec(
        """
        CREATE TEMP TABLE scale_ref2 ON COMMIT DROP AS
        SELECT r.*, t.priority, t.rank, t.minutes,
               r.requested_at + t.minutes * interval '1 minute' AS deadline_at,
               r.requested_at + t.minutes * 0.75 * interval '1 minute' AS warn_at,
               CASE WHEN r.is_open THEN
                    CASE WHEN r.r_status < 0.55 THEN 'routed'
                         WHEN r.r_status < 0.80 THEN 'claimed' ELSE 'reporting' END
                    ELSE CASE WHEN r.r_status < 0.03 THEN 'returned'
                              WHEN r.r_status < 0.05 THEN 'cancelled'
                              WHEN r.r_status < 0.45 THEN 'delivered'
                              ELSE 'acknowledged' END END AS status,
               CASE WHEN r.r_kind < 0.94 THEN 'remote_read' WHEN r.r_kind < 0.98
                    THEN 'consultation' ELSE 'transfer_up' END AS kind,
               CASE WHEN t.priority = 'stat' THEN 'general'
                    WHEN r.modalities LIKE 'CT%%' AND r.body_parts = 'CHEST' THEN 'thoracic'
                    WHEN r.modalities = 'MR' THEN 'neuro'
                    WHEN r.modalities LIKE 'CT%%' AND r.body_parts = 'HEAD' THEN 'neuro'
                    WHEN r.modalities = 'CR' THEN 'msk'
                    WHEN r.modalities LIKE 'CT%%' THEN 'general'
                    WHEN r.tier = 'grassroots' THEN 'county:' || r.upper_id
                    ELSE 'general' END AS pool_key
        FROM scale_ref AS r
        CROSS JOIN LATERAL (SELECT CASE WHEN r.r_priority < 0.05 THEN 'stat'
                                        WHEN r.r_priority < 0.25 THEN 'urgent'
                                        ELSE 'routine' END AS priority) AS p
        CROSS JOIN LATERAL (SELECT p.priority, CASE p.priority WHEN 'stat' THEN 0
                                   WHEN 'urgent' THEN 1 ELSE 2 END AS rank,
                                   CASE p.priority WHEN 'stat' THEN 30 WHEN 'urgent' THEN 120
                                   ELSE 1440 END AS minutes) AS t""",
        params,
    )
    # The steps' times: claim and report delays as shares of the time allowed.
    _exec(
        """
        INSERT INTO referrals_referral (
            kind, clinical_question, priority, priority_rank, status, automatic, requested_at,
            deadline_at, warn_at, warned_at, breached_at, escalation_level, routed_at,
            routing_explanation, unroutable, claimed_at, opened_at, reported_at, delivered_at,
            acknowledged_at, return_reason, return_comment, updated_at, alliance_id,
            assigned_to_id, claimed_by_id, pool_id, requested_by_id, rule_id, source_id,
            study_id, target_id)
        SELECT x.kind, '', x.priority, x.rank, x.status, x.tier = 'grassroots', x.requested_at,
               x.deadline_at, x.warn_at,
               CASE WHEN x.warn_at < x.stop_at THEN x.warn_at END,
               CASE WHEN x.deadline_at < x.stop_at THEN x.deadline_at END,
               CASE WHEN x.deadline_at < x.stop_at THEN 1 ELSE 0 END,
               x.routed_at, 'seeded: ' || x.pool_key || ' pool', x.pool_key = 'general'
                 AND x.priority <> 'stat' AND x.modalities NOT LIKE 'CT%%',
               x.claimed_at, x.opened_at, x.reported_at, x.delivered_at, x.acknowledged_at,
               CASE WHEN x.status = 'returned'
                    THEN (%(reasons)s::text[])[1 + floor(x.r_kind * 5)::int] ELSE '' END,
               '', x.stop_at, x.alliance_id, x.reader,
               CASE WHEN x.claimed_at IS NOT NULL THEN x.reader END, x.pool_id, NULL, NULL,
               x.source_id, x.study_id, x.target_id
        FROM (
            SELECT y.*,
                   CASE WHEN y.status IN ('routed', 'cancelled') THEN NULL
                        ELSE y.claimed END AS claimed_at,
                   CASE WHEN y.status IN ('routed', 'cancelled') THEN NULL
                        ELSE least(y.claimed + interval '20 seconds', now()) END AS opened_at,
                   CASE WHEN y.status IN ('delivered', 'acknowledged') THEN y.reported END
                     AS reported_at,
                   CASE WHEN y.status IN ('delivered', 'acknowledged') THEN y.reported END
                     AS delivered_at,
                   CASE WHEN y.status = 'acknowledged' THEN y.reported + interval '3 hours' END
                     AS acknowledged_at,
                   CASE WHEN y.is_open THEN now()
                        WHEN y.status = 'cancelled' THEN y.routed_at + interval '5 minutes'
                        WHEN y.status = 'returned' THEN y.claimed + interval '3 minutes'
                        ELSE y.reported END AS stop_at
            FROM (
                SELECT z.*, z.requested_at + interval '2 seconds' AS routed_at,
                       CASE WHEN z.is_open
                            THEN z.requested_at + (now() - z.requested_at) * z.r_claim * 0.5
                            ELSE z.requested_at + z.minutes * (0.02 + 0.3 * z.r_claim)
                                 * interval '1 minute' END AS claimed,
                       z.requested_at + z.minutes * (0.07 + 0.3 * z.r_claim
                                                     + 0.8 * z.r_report)
                         * interval '1 minute' AS reported,
                       sp.pool_id, sp.institution_id AS target_id,
                       sp.readers[1 + floor(random() * cardinality(sp.readers))::int] AS reader
                FROM scale_ref2 AS z
                JOIN scale_pool AS sp ON sp.alliance_id = z.alliance_id AND sp.key = z.pool_key
            ) AS y
        ) AS x
        ORDER BY x.requested_at""",
        params,
    )


def _history(alliance_ids: list[int]) -> tuple[int, int]:
    """Each referral's events, carried studies (priors of the open ones) and grants."""
    params = {"alliances": alliance_ids}
    events = _exec(
        """
        INSERT INTO referrals_referralevent (action, from_status, to_status, at, reason, data,
                                             actor_id, actor_institution_id, referral_id)
        SELECT e.action, e.from_s, e.to_s, e.at, '', '{}'::jsonb, e.actor, e.inst, r.id
        FROM referrals_referral AS r
        CROSS JOIN LATERAL (VALUES
            ('create', '', 'requested', r.requested_at, NULL::bigint, r.source_id),
            ('route', 'requested', 'routed', r.routed_at, NULL, NULL),
            ('claim', 'routed', 'claimed', r.claimed_at, r.claimed_by_id, r.target_id),
            ('open', 'claimed', 'claimed', r.opened_at, r.claimed_by_id, r.target_id),
            ('start_report', 'claimed', 'reporting',
             CASE WHEN r.status IN ('reporting', 'reported', 'delivered', 'acknowledged')
                  THEN r.opened_at END, r.claimed_by_id, r.target_id),
            ('report', 'reporting', 'reported', r.reported_at, r.claimed_by_id, r.target_id),
            ('deliver', 'reported', 'delivered', r.delivered_at, NULL, NULL),
            ('acknowledge', 'delivered', 'acknowledged', r.acknowledged_at, NULL, r.source_id),
            ('warn', r.status, r.status, r.warned_at, NULL, NULL),
            ('breach', r.status, r.status, r.breached_at, NULL, NULL),
            ('return', 'claimed', 'returned',
             CASE WHEN r.status = 'returned' THEN r.updated_at END, r.claimed_by_id,
             r.target_id),
            ('cancel', 'routed', 'cancelled',
             CASE WHEN r.status = 'cancelled' THEN r.updated_at END, NULL, r.source_id)
        ) AS e(action, from_s, to_s, at, actor, inst)
        WHERE e.at IS NOT NULL AND r.alliance_id = ANY(%(alliances)s)""",
        params,
    )
    _exec(
        """
        INSERT INTO referrals_referralstudy (is_prior, referral_id, study_id)
        SELECT false, r.id, r.study_id FROM referrals_referral AS r
        WHERE r.alliance_id = ANY(%(alliances)s)""",
        params,
    )
    # The patient's other studies at any site of the alliance come with an open case.
    _exec(
        """
        INSERT INTO referrals_referralstudy (is_prior, referral_id, study_id)
        SELECT true, r.id, prior.id
        FROM referrals_referral AS r
        JOIN referrals_study AS st ON st.id = r.study_id
        JOIN alliance_alliancemember AS am ON am.alliance_id = r.alliance_id
        JOIN referrals_study AS prior ON prior.patient_key = st.patient_key
         AND prior.institution_id = am.institution_id AND prior.id <> st.id
        WHERE r.alliance_id = ANY(%(alliances)s)
          AND r.status IN ('routed', 'claimed', 'reporting')""",
        params,
    )
    grants = _exec(
        """
        INSERT INTO referrals_studygrant (source, source_id, is_prior, valid_from, valid_until,
                                          revoked_at, created_at, institution_id, study_id,
                                          user_id)
        SELECT 'referral', r.id, rs.is_prior, r.routed_at,
               CASE WHEN r.delivered_at IS NOT NULL
                    THEN r.delivered_at + interval '30 days' END,
               CASE WHEN r.status IN ('returned', 'cancelled') THEN r.updated_at END,
               r.routed_at, r.target_id, rs.study_id, NULL
        FROM referrals_referral AS r
        JOIN referrals_referralstudy AS rs ON rs.referral_id = r.id
        WHERE r.alliance_id = ANY(%(alliances)s) AND r.target_id IS NOT NULL""",
        params,
    )
    return events, grants


TABLES = [
    "referrals_patient",
    "referrals_study",
    "referrals_referral",
    "referrals_referralevent",
    "referrals_referralstudy",
    "referrals_studygrant",
    "tenants_institution",
    "tenants_user",
    "tenants_membership",
    "alliance_readerpool",
    "alliance_poolmember",
    "alliance_routingrule",
    "alliance_alliancemember",
]


def seed_scale(
    *,
    studies: int,
    sites: int,
    open_cases: int | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> SeedSummary:
    """Seed the scale world; refuses (SeedRefusedError) on a database that holds one."""
    if world_exists():
        raise SeedRefusedError(
            f"this database already holds the scale world ({seeded_studies()} studies); "
            f"drop and re-create it to seed again"
        )
    if sites < 3:
        raise ValueError("the scale world needs at least 3 sites (a hospital, a county, a clinic)")
    open_cases = default_open(studies) if open_cases is None else open_cases
    start = time.perf_counter()

    def step(text: str) -> None:
        say(f"  {time.perf_counter() - start:6.1f} s  {text}")

    with transaction.atomic():
        world = world_create(sites=sites)
        step(
            f"{len(world.alliances)} alliances, {len(world.sites)} sites, "
            f"{len(world.pools)} pools, readers and rules"
        )
        _tables(world)
        with _bulk_load("referrals_patient", "referrals_study"):
            _people_and_studies(studies, len(world.sites))
            step(f"{studies} studies and their patients")
        _exec("ANALYZE referrals_study")
        step("studies indexed")
        alliance_ids = [a.pk for a in world.alliances]
        referrals = Referral.objects.filter(alliance_id__in=alliance_ids)
        with _bulk_load(
            "referrals_referral",
            "referrals_referralevent",
            "referrals_referralstudy",
            "referrals_studygrant",
        ):
            _referrals(open_cases)
            _exec("ANALYZE referrals_referral")
            step(f"{referrals.count()} referrals")
            events, grants = _history(alliance_ids)
            step(f"{events} events, {grants} grants")
        step("referrals indexed")
    # ANALYZE outside the transaction: the planner sees the new rows at once.
    for table in TABLES:
        _exec(f"ANALYZE {table}")
    step("analyzed")
    return SeedSummary(
        studies=seeded_studies(),
        referrals=referrals.count(),
        open_referrals=referrals.filter(status__in=["routed", "claimed", "reporting"]).count(),
        events=events,
        grants=grants,
        seconds=time.perf_counter() - start,
    )
