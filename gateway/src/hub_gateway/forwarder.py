"""The forwarder: sends spooled instances to the hub's STOW-RS, retries, fails over.

A spooled file is deleted only when the hub's answer lists its SOP Instance in the
ReferencedSOPSequence (stored now, or already held with the same data set), or names it as
held for review (the hub keeps it aside for a person: delivered). A failure entry with a
lasting reason (a true conflict, an unreadable file) moves it to rejected/; everything else
leaves it in the spool to be sent again, so a crash or a lost answer can only cause a
re-send, which the hub answers as a success without storing a second copy.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import GatewayConfig
from .hub import (
    CredentialRefusedError,
    HubClient,
    HubRefusedRequestError,
    HubUnavailableError,
    StoreAnswer,
    reason_is_held,
    reason_is_transient,
)
from .spool import Spool, SpoolItem

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
# A lone instance that the hub answers for without ever naming it is set aside after this
# many tries (the hub is then misbehaving; the file is kept in rejected/, not lost).
MAX_UNEXPLAINED_ATTEMPTS = 5


class Backoff:
    """Exponential backoff with jitter, shared by the forwarding threads.

    The n-th failure in a row waits between half and all of min(max, base * 2**(n-1)),
    so gateways that lost the hub together do not come back in step.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._ready_at = 0.0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._lock = threading.Lock()

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def failed(self, retry_after: float | None = None) -> float:
        with self._lock:
            self.failures += 1
            wait = self.delay(self.failures)
            if retry_after is not None:
                wait = max(wait, min(retry_after, self.cap))  # honour 429/503 Retry-After
            self._ready_at = self._clock() + wait
            return wait

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0
            self._ready_at = 0.0

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._ready_at - self._clock())


class HubRoute:
    """Which hub URL to use: the primary, or the standby after N failures in a row.

    On the standby, the primary is tried again every `failback_after` seconds; one success
    there brings the gateway back. If the standby fails N times in a row too, the gateway
    goes back to the primary.
    """

    def __init__(
        self,
        primary: str,
        standby: str | None,
        *,
        failover_after: int,
        failback_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.standby = standby
        self.active = primary
        self.failover_after = failover_after
        self.failback_after = failback_after
        self._failures = {primary: 0, **({standby: 0} if standby else {})}
        self._switched_at = clock()
        self._clock = clock
        self._lock = threading.Lock()

    def target(self) -> str:
        with self._lock:
            if (
                self.active != self.primary
                and self._clock() - self._switched_at >= self.failback_after
            ):
                return self.primary  # a probe: is the primary back?
            return self.active

    def succeeded(self, url: str) -> None:
        with self._lock:
            self._failures[url] = 0
            if url != self.active:
                logger.warning("the primary hub answers again; forwarding to %s", url)
                self.active = url
                self._switched_at = self._clock()

    def failed(self, url: str) -> bool:
        """Count a failure of `url`; True if the gateway switched to the other URL."""
        with self._lock:
            if url != self.active:
                self._switched_at = self._clock()  # the failback probe failed: wait again
                return False
            self._failures[url] += 1
            other = self.standby if url == self.primary else self.primary
            if other is None or self._failures[url] < self.failover_after:
                return False
            logger.warning(
                "%s failed %d times in a row; forwarding to %s instead",
                url,
                self._failures[url],
                other,
            )
            self.active = other
            self._failures[other] = 0
            self._switched_at = self._clock()
            return True


@dataclass
class BatchResult:
    """What one request did (for the log, the state file and the tests)."""

    confirmed: int = 0
    rejected: int = 0
    retried: int = 0
    error: str = ""
    held: int = 0  # delivered, and kept aside at the hub for a person (counted in confirmed)


class Forwarder:
    """Worker threads that drain the spool into the hub."""

    def __init__(
        self,
        *,
        spool: Spool,
        config: GatewayConfig,
        client_factory: Callable[[GatewayConfig], HubClient] = HubClient,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.config = config
        self.client_factory = client_factory
        self.backoff = Backoff(config.retry_base, config.retry_max, rng=rng)
        self.route = HubRoute(
            config.hub_url,
            config.standby_url,
            failover_after=config.failover_after,
            failback_after=config.failback_after,
        )
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.config.forward_workers):
            thread = threading.Thread(
                target=self._work, args=(index,), daemon=True, name=f"gateway-forwarder-{index}"
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking new batches; a request in flight may finish (or be sent again)."""
        self._stop.set()
        self.spool.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self, index: int) -> None:
        client = self.client_factory(self.config)
        try:
            while not self._stop.is_set():
                wait = self.backoff.remaining()
                if wait > 0:
                    self._stop.wait(min(wait, IDLE_POLL_SECONDS))
                    continue
                if index > 0 and self.backoff.failures:
                    # While the hub is failing, one thread probes; the others wait.
                    self._stop.wait(IDLE_POLL_SECONDS / 2)
                    continue
                self.run_once(client)
        finally:
            client.close()

    def run_once(self, client: HubClient) -> bool:
        """Send one batch if there is one; otherwise wait a little for arrivals."""
        batch, generation = self.spool.claim(
            max_files=self.config.batch_files, max_bytes=self.config.batch_bytes
        )
        if not batch:
            self.spool.wait_for_arrival(generation, IDLE_POLL_SECONDS)
            return False
        try:
            self.forward(client, batch)
        except Exception:  # a bug must not stop forwarding: log it and back off
            logger.exception("unexpected error while forwarding %d instances", len(batch))
            self.backoff.failed()
        finally:
            self.spool.release(batch)
        return True

    # --- one request ---------------------------------------------------------------------

    def forward(self, client: HubClient, batch: Sequence[SpoolItem]) -> BatchResult:
        url = self.route.target()
        state = self.spool.state
        try:
            answer = client.store(url, batch)
        except HubUnavailableError as exc:
            self.route.failed(url)
            wait = self.backoff.failed(exc.retry_after)
            message = str(exc)
            if isinstance(exc, CredentialRefusedError):
                message += " (check GATEWAY_KEY_ID / the secret; was the credential revoked?)"
            logger.warning(
                "%s; %d instance(s) stay spooled, next try in %.1f s", message, len(batch), wait
            )
            state.record_error(message, hub=url)
            return BatchResult(retried=len(batch), error=message)
        except HubRefusedRequestError as exc:
            self.route.succeeded(url)  # the hub is up; it did not like this request
            if len(batch) > 1:
                for item in batch:
                    self.spool.mark_solo(item)
                logger.warning(
                    "%s: %s; sending those %d instances one by one", url, exc, len(batch)
                )
                return BatchResult(retried=len(batch), error=str(exc))
            self._reject(batch[0], reason=None, message=str(exc), url=url)
            return BatchResult(rejected=1, error=str(exc))
        return self._apply(answer, batch, url)

    def _apply(self, answer: StoreAnswer, batch: Sequence[SpoolItem], url: str) -> BatchResult:
        by_uid = {item.sop_instance_uid: item for item in batch if item.sop_instance_uid}
        stored: list[SpoolItem] = []
        refused: list[tuple[SpoolItem, int | None, str]] = []
        if len(batch) == 1 and len(answer.referenced) + len(answer.failed) == 1:
            # One part, one outcome: it is this item's, whatever UID the hub read in it.
            if answer.referenced:
                stored.append(batch[0])
            else:
                failure = answer.failed[0]
                refused.append((batch[0], failure.reason, failure.message))
        else:
            for uid in answer.referenced:
                if uid in by_uid:
                    stored.append(by_uid.pop(uid))
            for failure in answer.failed:
                if failure.sop_instance_uid in by_uid:
                    item = by_uid.pop(failure.sop_instance_uid)
                    refused.append((item, failure.reason, failure.message))
        settled = {item.item_id for item in stored} | {item.item_id for item, _, _ in refused}
        unexplained = [item for item in batch if item.item_id not in settled]

        result = BatchResult()
        for item in stored:
            self.spool.confirm(item)
            result.confirmed += 1
        errors: list[str] = []
        for item, reason, message in refused:
            if reason_is_held(reason):
                self.spool.confirm(item)
                result.confirmed += 1
                result.held += 1
                logger.warning(
                    "the hub holds %s for review (%s): %s",
                    item.sop_instance_uid or item.item_id,
                    _hex(reason),
                    message or "no reason given",
                )
                continue
            text = (
                f"the hub refused {item.sop_instance_uid or item.item_id}: "
                f"{message or 'no reason given'} ({_hex(reason)})"
            )
            if reason_is_transient(reason):
                attempts = self.spool.defer(item, self._item_delay(item))
                logger.warning("%s; will try again (attempt %d)", text, attempts)
                result.retried += 1
            else:
                self._reject(item, reason=reason, message=message or text, url=url)
                result.rejected += 1
            errors.append(text)
        for item in unexplained:
            if len(batch) > 1:
                self.spool.mark_solo(item)  # alone, the hub's answer is attributable
            elif self.spool.attempts(item) + 1 >= MAX_UNEXPLAINED_ATTEMPTS:
                self._reject(
                    item,
                    reason=None,
                    url=url,
                    message="the hub's answers never named this instance",
                )
                result.rejected += 1
                continue
            else:
                self.spool.defer(item, self._item_delay(item))
            result.retried += 1
            errors.append(f"the hub's answer did not name {item.sop_instance_uid}")

        if result.confirmed:
            self.spool.state.record_success(result.confirmed, hub=url)
        if result.retried and not result.confirmed and not result.rejected:
            # The hub answered but kept nothing: count it as that hub failing.
            self.route.failed(url)
            self.backoff.failed()
        else:
            self.route.succeeded(url)
            self.backoff.succeeded()
        if errors:
            result.error = errors[0]
            self.spool.state.record_error(
                errors[0] if len(errors) == 1 else f"{errors[0]} (and {len(errors) - 1} more)",
                hub=url,
            )
        logger.info(
            "%s: %d confirmed, %d rejected, %d to retry",
            url,
            result.confirmed,
            result.rejected,
            result.retried,
        )
        return result

    def _item_delay(self, item: SpoolItem) -> float:
        return self.backoff.delay(self.spool.attempts(item) + 1)

    def _reject(self, item: SpoolItem, *, reason: int | None, message: str, url: str) -> None:
        target = self.spool.reject(item, reason=reason, message=message, hub=url)
        logger.error("rejected for good (%s): %s; kept as %s", _hex(reason), message, target)


def _hex(reason: int | None) -> str:
    return f"0x{reason:04X}" if reason is not None else "no DICOM reason"
