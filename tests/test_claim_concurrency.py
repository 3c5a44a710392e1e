"""Claims against PostgreSQL from many threads, each on its own real connection.

- 20 readers press "claim" on one case at the same instant: exactly one gets it, the other
  19 are told it is taken (ReferralConflictError), and one 'claim' event is recorded;
- readers press "next case" over and over together: SKIP LOCKED hands each case to one
  reader only, and every case is taken.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from referrals.models import Referral, ReferralEvent, ReferralStatus
from referrals.workflow import services

from .referral_flow_support import readers, referral_row, scope
from .referral_support import reading_setup

pytestmark = pytest.mark.django_db(transaction=True)


def together(n: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run `work(i)` in `n` threads released at once; each closes its own connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=20)
            result = work(i)
            with lock:
                results.append(result)
        except BaseException as exc:  # collected for the test to judge
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a claim thread hung"
    return results, errors


def test_twenty_readers_claim_one_case_and_exactly_one_wins(world):
    reading = reading_setup(world)
    team = readers(world, reading.general, 20)
    referral = referral_row(
        world, status=ReferralStatus.ROUTED, pool=reading.general, target=world.reader
    )
    scopes = [scope(user, world.reader) for user in team]

    results, errors = together(
        20,
        lambda i: services.referral_claim(scope=scopes[i], referral_id=referral.pk).claimed_by_id,
    )

    assert len(results) == 1, (results, errors)
    assert len(errors) == 19
    assert all(type(e) is services.ReferralConflictError for e in errors), errors
    assert {getattr(e, "code", None) for e in errors} == {"already_claimed"}
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.CLAIMED
    assert referral.claimed_by_id == results[0]
    [event] = ReferralEvent.objects.filter(referral=referral, action="claim")
    assert event.actor_id == results[0]


def test_readers_pressing_next_case_together_never_get_the_same_case(world):
    reading = reading_setup(world)
    team = readers(world, reading.general, 8, capacity=100)
    cases = [
        referral_row(
            world,
            status=ReferralStatus.ROUTED,
            pool=reading.general,
            target=world.reader,
            priority=("stat", "urgent", "routine")[i % 3],
        )
        for i in range(40)
    ]
    scopes = [scope(user, world.reader) for user in team]

    def take_until_empty(i: int) -> tuple[int, list[int]]:
        mine = []
        while (case := services.referral_claim_next(scope=scopes[i])) is not None:
            mine.append(case.pk)
        return team[i].pk, mine

    results, errors = together(len(team), take_until_empty)
    assert errors == []
    taken = [pk for _user, mine in results for pk in mine]
    assert Counter(taken).most_common(1)[0][1] == 1  # no case twice
    assert sorted(taken) == sorted(c.pk for c in cases)  # and none left behind
    claims = Counter(
        ReferralEvent.objects.filter(action="claim").values_list("referral_id", flat=True)
    )
    assert set(claims.values()) == {1}
    assert len(claims) == len(cases)
    holder = {pk: user for user, mine in results for pk in mine}
    for referral in Referral.objects.filter(pk__in=taken):
        assert referral.status == ReferralStatus.CLAIMED
        assert referral.claimed_by_id == holder[referral.pk]


def test_next_case_takes_the_most_urgent_first(world):
    reading = reading_setup(world)
    [reader] = readers(world, reading.general, 1, capacity=100)
    routine = referral_row(world, status=ReferralStatus.ROUTED, pool=reading.general, minutes=10)
    stat_late = referral_row(
        world, status=ReferralStatus.ROUTED, pool=reading.general, priority="stat", minutes=30
    )
    stat_soon = referral_row(
        world, status=ReferralStatus.ROUTED, pool=reading.general, priority="stat", minutes=20
    )
    # Proposed to another active reader of the pool: not this reader's "next".
    referral_row(
        world,
        status=ReferralStatus.ROUTED,
        pool=reading.general,
        priority="stat",
        minutes=5,
        assigned_to=reading.rob,
    )
    me = scope(reader, world.reader)
    order = [services.referral_claim_next(scope=me) for _ in range(4)]
    assert [r.pk if r else None for r in order] == [stat_soon.pk, stat_late.pk, routine.pk, None]
