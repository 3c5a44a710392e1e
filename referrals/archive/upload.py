"""Browser upload: which of the files a clinic is about to send the hub already holds.

A browser that lost its connection mid-upload asks this before sending again, so nothing
that already arrived is sent twice (PRODUCT.md: "nothing they send may be lost or
duplicated"). The answer covers only the caller's own institution: that is where a STOW
from this caller stores, whatever else a referral may later let the caller see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from referrals.models import HeldInstance, Instance
from tenants import access
from tenants.access import Scope

# Gateways send through STOW-RS with their own credential; the page is for people.
# One check answers at most this many files; the page asks in chunks.
UPLOAD_CHECK_MAX = 1000
# Files sent in one STOW-RS request by the page: small enough that a dropped connection
# costs little, large enough that request overhead does not dominate.
UPLOAD_BATCH_FILES = 4
UPLOAD_BATCH_BYTES = 8 * 1024 * 1024

Presence = Literal["stored", "held", "conflict", "missing"]


@dataclass(frozen=True)
class UploadCandidate:
    sop_instance_uid: str
    sha256: str
    # SHA-256 of the bytes after the file meta group; "" when the client did not compute it.
    dataset_sha256: str = ""


@dataclass(frozen=True)
class UploadPresence:
    sop_instance_uid: str
    status: Presence


def upload_presence_list(
    *, scope: Scope, candidates: Iterable[UploadCandidate]
) -> list[UploadPresence]:
    """For each candidate, in order: already stored (the same file, or the same data set
    under other file meta), held for review at the hub (the same, kept aside), a conflict
    (the hub holds another data set under that UID, so a send would be refused) or missing.

    Without the candidate's data set digest, other file bytes are "missing": the hub judges
    the data set when the file arrives."""
    wanted = list(candidates)
    if scope.institution is None or not wanted:
        return [UploadPresence(c.sop_instance_uid, "missing") for c in wanted]
    uids = {c.sop_instance_uid for c in wanted}
    # visible() decides what the caller may see at all; the institution narrows it to the
    # archive this caller's STOW writes into, so a study granted by another site never
    # makes its instances look "already sent".
    stored = {
        uid: (sha, dataset)
        for uid, sha, dataset in access.visible(scope, Instance)
        .filter(institution=scope.institution, sop_uid__in=uids)
        .values_list("sop_uid", "sha256", "dataset_sha256")
    }
    # Held instances are the site's own: the same institution filter, without the
    # archive-management role the queue's rule asks for (a sender only learns "held").
    kept_aside = {
        uid: (sha, dataset)
        for uid, sha, dataset in HeldInstance.objects.filter(
            institution=scope.institution, sop_uid__in=uids, resolved_at__isnull=True
        ).values_list("sop_uid", "sha256", "dataset_sha256")
    }
    answers = []
    for candidate in wanted:
        status: Presence = "missing"
        sha, dataset = candidate.sha256.lower(), candidate.dataset_sha256.lower()
        found = stored.get(candidate.sop_instance_uid)
        aside = kept_aside.get(candidate.sop_instance_uid)
        if found is not None:
            if sha == found[0] or (dataset and dataset == found[1]):
                status = "stored"
            elif dataset and found[1]:
                status = "conflict"
        elif aside is not None and (sha == aside[0] or (dataset and dataset == aside[1])):
            status = "held"
        answers.append(UploadPresence(candidate.sop_instance_uid, status))
    return answers
