"""The gateway's Modality Worklist: the site's scheduled exams, from the hub, kept on disk.

The scanners ask with C-FIND (Modality Worklist Information Model - FIND, PS3.4 K.6) and are
answered from a local copy: the copy is refreshed from the hub every few seconds and kept in
the spool directory, so a clinic whose uplink dropped (or a gateway restarted while it is
down) still gives its scanners the exams registered before, and the studies still arrive
with the registered patient IDs, accession numbers and Study Instance UIDs.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .hub import HubClient, HubUnavailableError
from .spool import _read_json, utc_now, write_json_atomically

logger = logging.getLogger(__name__)

CACHE_DIR = "worklist"  # inside the spool; the spool's own sweep leaves folders alone
CACHE_FILE = "cache.json"
UTF8 = "ISO_IR 192"

PENDING = 0xFF00
CANCEL = 0xFE00
UNABLE_TO_PROCESS = 0xC001

SPS = "ScheduledProcedureStepSequence"
# Keys an exam without a scanner named matches whatever the scanner asks with: a clinic
# does not always know which room will do the exam.
_OPEN_WHEN_EMPTY = {"ScheduledStationAETitle"}
# Not matched on: they say how to encode the answer, not what to find.
_NOT_KEYS = {"SpecificCharacterSet", "QueryRetrieveLevel"}


class WorklistCache:
    """The last worklist the hub gave, in memory and on disk (one JSON file)."""

    def __init__(self, spool_dir: Path) -> None:
        self.folder = Path(spool_dir) / CACHE_DIR
        self.path = self.folder / CACHE_FILE
        self._lock = threading.Lock()
        self._items: list[Dataset] = []
        self.fetched_at: str | None = None

    def load(self) -> int:
        """Read the copy kept on disk (at start, before the hub has answered)."""
        data = _read_json(self.path)
        items = self._parse(data.get("items") or [])
        with self._lock:
            self._items = items
            self.fetched_at = data.get("fetched_at")
        return len(items)

    def replace(self, raw_items: list[dict[str, Any]]) -> int:
        """Adopt the hub's answer: on disk first, so a restart finds what was served."""
        items = self._parse(raw_items)
        fetched_at = utc_now()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json_atomically(self.path, {"fetched_at": fetched_at, "items": raw_items})
        with self._lock:
            self._items = items
            self.fetched_at = fetched_at
        return len(items)

    def items(self) -> list[Dataset]:
        with self._lock:
            return list(self._items)

    @staticmethod
    def _parse(raw_items: list[Any]) -> list[Dataset]:
        items = []
        for raw in raw_items:
            try:
                item = Dataset.from_json(raw)
            except Exception as exc:  # one odd item must not empty the whole worklist
                logger.warning("a worklist item from the hub could not be read: %s", exc)
                continue
            item.SpecificCharacterSet = UTF8
            items.append(item)
        return items


# --- Matching (PS3.4 C.2.2.2) ------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):  # a multi-valued element: its DICOM form
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _wildcard(pattern: str, value: str, *, fold: bool) -> bool:
    if fold:
        pattern, value = pattern.casefold(), value.casefold()
    # fnmatch also reads [...] as a set; DICOM has only * and ?.
    regex = fnmatch.translate(pattern.replace("[", "\x00").replace("]", "\x01"))
    return re.match(regex, value.replace("[", "\x00").replace("]", "\x01")) is not None


def _person_name_matches(pattern: str, value: str) -> bool:
    """Against the whole name or any of its groups (alphabetic, ideographic, phonetic), case
    folded: 'wang*', '王*' and 'Wang^Jianguo=王^建国' all find 'Wang^Jianguo=王^建国'."""
    candidates = [value, *(group for group in value.split("=") if group)]
    wanted = [pattern, *(group for group in pattern.split("=") if group and "=" in pattern)]
    return any(_wildcard(p, v, fold=True) for p in wanted for v in candidates)


def _range_matches(query: str, value: str) -> bool:
    """DA/TM/DT: a single value, or a range 'from-to', '-to' or 'from-'."""
    if not value:
        return False
    if "-" not in query:
        return value.startswith(query) if len(query) < len(value) else value == query
    low, _, high = query.partition("-")
    width = len(value)
    return (not low or value >= low.ljust(width, "0")[:width]) and (
        not high or value[: len(high)] <= high
    )


def element_matches(query: DataElement, item: Dataset) -> bool:
    wanted = _text(query.value)
    if query.VR == "SQ" or not wanted or wanted == "*":
        return True  # universal matching
    if query.keyword not in item:
        return True  # a key this gateway does not keep: answered empty, not matched on
    value = _text(item[query.tag].value)
    if query.keyword in _OPEN_WHEN_EMPTY and not value:
        return True
    if query.VR in ("DA", "TM", "DT"):
        return _range_matches(wanted, value)
    if query.VR == "UI":
        return value in wanted.split("\\")  # list of UID matching
    if query.VR == "PN":
        return _person_name_matches(wanted, value)
    if "*" in wanted or "?" in wanted:
        return _wildcard(wanted, value, fold=False)
    return value == wanted


def _dataset_matches(query: Dataset, item: Dataset) -> bool:
    return all(
        element_matches(element, item)
        for element in query
        if element.keyword not in _NOT_KEYS and element.tag.group != 0x0000
    )


def _matching_steps(query: Dataset, item: Dataset) -> list[Dataset] | None:
    """The exam's scheduled steps the query's step item matches (all when it asks none)."""
    steps = list(item.get(SPS) or [])
    wanted = query.get(SPS)
    if wanted is None or len(wanted) == 0:
        return steps
    return [step for step in steps if _dataset_matches(wanted[0], step)]


def matches(query: Dataset, item: Dataset) -> bool:
    steps = _matching_steps(query, item)
    return bool(steps) and _dataset_matches(query, item)


def _answer_element(query: DataElement, item: Dataset) -> DataElement:
    if query.keyword in item:
        found = item[query.tag]
        return DataElement(query.tag, found.VR, found.value)
    return DataElement(query.tag, query.VR, None)


def answer(query: Dataset, item: Dataset) -> Dataset:
    """The response identifier: every key the query named, filled from the exam (PS3.4
    C.4.1.1.3.2), in UTF-8."""
    response = Dataset()
    response.SpecificCharacterSet = UTF8
    for element in query:
        if element.keyword in _NOT_KEYS or element.tag.group == 0x0000:
            continue
        if element.keyword == SPS:
            wanted = element.value[0] if element.value else None
            steps = []
            for step in _matching_steps(query, item) or []:
                if wanted is None or len(wanted) == 0:
                    steps.append(step)
                    continue
                reply = Dataset()
                for sub in wanted:
                    reply.add(_answer_element(sub, step))
                steps.append(reply)
            response.add(DataElement(element.tag, "SQ", Sequence(steps)))
            continue
        response.add(_answer_element(element, item))
    return response


def find(query: Dataset, items: list[Dataset]) -> Iterator[Dataset]:
    """The answers to one C-FIND request, in the worklist's order (scheduled time)."""
    for item in items:
        if matches(query, item):
            yield answer(query, item)


def handle_find(event: Any, cache: WorklistCache) -> Iterator[tuple[int, Dataset | None]]:
    """pynetdicom's C-FIND handler: one pending answer per matching exam, then success."""
    calling = event.assoc.requestor.ae_title
    try:
        query = event.identifier
    except Exception as exc:  # an identifier pydicom cannot decode
        logger.warning("a worklist query from %s could not be read: %s", calling, exc)
        yield UNABLE_TO_PROCESS, None
        return
    answered = 0
    for response in find(query, cache.items()):
        if event.is_cancelled:
            yield CANCEL, None
            return
        answered += 1
        yield PENDING, response
    logger.info(
        "worklist query from %s: %d exam(s)%s",
        calling,
        answered,
        f" (worklist as of {cache.fetched_at})" if cache.fetched_at else " (no worklist yet)",
    )


class WorklistRefresher:
    """Fetches the site's worklist from the hub every `interval` seconds into the cache.

    When no hub URL answers, the cache is left as it is: the scanners keep the exams they
    were offered before the uplink dropped.
    """

    def __init__(self, *, cache: WorklistCache, urls: tuple[str, ...], interval: float) -> None:
        self.cache = cache
        self.urls = urls
        self.interval = interval
        self._failing = False

    def refresh(self, client: HubClient) -> bool:
        """One fetch; True if the cache now holds the hub's current worklist."""
        errors = []
        for url in self.urls:
            try:
                items = client.worklist(url)
            except HubUnavailableError as exc:
                errors.append(str(exc))
                continue
            count = self.cache.replace(items)
            if self._failing:
                logger.info("worklist refreshed again from %s: %d exam(s)", url, count)
            else:
                logger.debug("worklist refreshed from %s: %d exam(s)", url, count)
            self._failing = False
            return True
        if not self._failing:
            logger.warning(
                "cannot refresh the worklist (%s): serving the copy of %s",
                "; ".join(errors) or "no hub URL",
                self.cache.fetched_at or "never (empty)",
            )
        self._failing = True
        return False

    def run(self, client: HubClient, stop: threading.Event) -> None:
        while True:
            self.refresh(client)
            if stop.wait(self.interval):
                return
