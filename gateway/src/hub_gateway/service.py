"""One running gateway: owns the spool, checks the credential, runs the SCP and forwarder."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .config import GatewayConfig
from .forwarder import Forwarder
from .hub import CredentialRefusedError, HubClient, HubUnavailableError
from .scp import StorageSCP
from .spool import Spool, utc_now
from .worklist import WorklistCache, WorklistRefresher

logger = logging.getLogger(__name__)

# While the hub has never confirmed the credential, ask again this often.
UNKNOWN_IDENTITY_RETRY_SECONDS = 30.0


class GatewayStartError(RuntimeError):
    """The gateway cannot run as configured (refused credential, spool in use...)."""


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        client_factory: Callable[[GatewayConfig], HubClient] = HubClient,
    ) -> None:
        self.config = config
        self.client_factory = client_factory
        self.spool = Spool(config.spool_dir)
        self.scp: StorageSCP | None = None
        self.forwarder: Forwarder | None = None
        self.identity_known = threading.Event()
        self.worklist = WorklistCache(config.spool_dir)

    def fetch_identity(self, client: HubClient) -> dict[str, Any]:
        """Ask each hub URL in turn who this credential is; the first answer wins."""
        errors = []
        for url in self.config.whoami_urls:
            try:
                data = client.whoami(url)
            except CredentialRefusedError:
                raise
            except HubUnavailableError as exc:
                errors.append(str(exc))
                continue
            institution = data.get("institution") or {}
            return {
                "key_id": data.get("key_id", self.config.key_id),
                "institution": {
                    k: institution.get(k)
                    for k in ("id", "code", "name")
                    if isinstance(institution, dict)
                },
                "calling_ae_titles": list(data["calling_ae_titles"]),
                "checked_at": utc_now(),
                "hub": url,
            }
        raise HubUnavailableError("; ".join(errors) or "no hub URL to ask")

    def _adopt(self, identity: dict[str, Any], *, cached: bool = False) -> None:
        titles = identity.get("calling_ae_titles") or []
        site = identity.get("institution", {}).get("code") or "?"
        logger.info(
            "credential %s belongs to site %s%s",
            self.config.key_id,
            site,
            " (as last confirmed; the hub is not answering now)" if cached else "",
        )
        if self.scp is not None:
            self.scp.set_accepted(titles)
        if not cached:
            self.spool.state.update(identity=identity)
            self.identity_known.set()

    def run(self, stop: threading.Event, *, ready: Callable[[Gateway], None] | None = None) -> None:
        """Run until `stop` is set. Raises GatewayStartError if it cannot start."""
        config = self.config
        for warning in config.warnings:
            logger.warning("%s", warning)
        try:
            with self.spool.exclusive():
                self._run_locked(stop, ready)
        except OSError as exc:
            raise GatewayStartError(f"spool {config.spool_dir}: {exc}") from exc

    def _run_locked(self, stop: threading.Event, ready: Callable[[Gateway], None] | None) -> None:
        config = self.config
        waiting = self.spool.recover()
        exams = self.worklist.load()
        if exams:
            logger.info("%d scheduled exam(s) in the worklist kept from before", exams)
        if waiting:
            logger.info("%d instance(s) wait in the spool from before; sending them first", waiting)
        client = self.client_factory(config)
        identity: dict[str, Any] | None = None
        try:
            identity = self.fetch_identity(client)
        except CredentialRefusedError as exc:
            self.spool.state.record_error(str(exc))
            raise GatewayStartError(str(exc)) from None
        except HubUnavailableError as exc:
            logger.warning("cannot reach the hub to check the credential: %s", exc)
            self.spool.state.record_error(f"credential check: {exc}")
        cached = self.spool.state.snapshot().get("identity")
        if identity is None and cached and cached.get("key_id") != config.key_id:
            cached = None  # learnt for another credential: not ours to trust

        if not config.forward_only:
            self.scp = StorageSCP(
                ae_title=config.ae_title,
                bind_host=config.bind_host,
                port=config.port,
                spool=self.spool,
                max_associations=config.max_associations,
                min_free_bytes=config.min_free_bytes,
                worklist=self.worklist,
                called_ae_titles=config.called_ae_titles,
                accept_any_called_ae=config.accept_any_called_ae,
            )
        if identity is not None:
            self._adopt(identity)
        elif cached:
            self._adopt(cached, cached=True)
        elif self.scp is not None:
            logger.warning(
                "the hub never confirmed this credential: refusing every association until it does"
            )
            self.scp.set_accepted([])
        try:
            if self.scp is not None:
                try:
                    self.scp.start()
                except OSError as exc:
                    raise GatewayStartError(
                        f"cannot listen on {config.bind_host}:{config.port}: {exc}"
                    ) from None
            self.forwarder = Forwarder(
                spool=self.spool, config=config, client_factory=self.client_factory
            )
            self.forwarder.start()
            refresher = threading.Thread(
                target=self._refresh_identity,
                args=(client, stop),
                daemon=True,
                name="gateway-identity",
            )
            refresher.start()
            if self.scp is not None:
                threading.Thread(
                    target=self._refresh_worklist,
                    args=(stop,),
                    daemon=True,
                    name="gateway-worklist",
                ).start()
            logger.info(
                "gateway %s running: spool %s, hub %s%s",
                config.ae_title,
                config.spool_dir,
                config.hub_url,
                f", standby {config.standby_url}" if config.standby_url else "",
            )
            if ready is not None:
                ready(self)
            stop.wait()
            logger.info("stopping: no new associations; in-flight requests may finish")
        finally:
            if self.scp is not None:
                self.scp.stop()
            if self.forwarder is not None:
                self.forwarder.stop(timeout=min(30.0, config.timeout))
            client.close()

    def _refresh_worklist(self, stop: threading.Event) -> None:
        """Keep the Modality Worklist current; its own HTTP session (one per thread)."""
        client = self.client_factory(self.config)
        refresher = WorklistRefresher(
            cache=self.worklist,
            urls=self.config.worklist_urls,
            interval=self.config.worklist_refresh,
        )
        try:
            refresher.run(client, stop)
        finally:
            client.close()

    def _refresh_identity(self, client: HubClient, stop: threading.Event) -> None:
        """Re-read the accepted AE titles now and then: an administrator may change them."""
        while True:
            interval = (
                self.config.identity_refresh
                if self.identity_known.is_set()
                else min(UNKNOWN_IDENTITY_RETRY_SECONDS, self.config.identity_refresh)
            )
            if stop.wait(interval):
                return
            try:
                identity = self.fetch_identity(client)
            except CredentialRefusedError as exc:
                logger.error("%s: refusing every association until it is fixed", exc)
                self.spool.state.record_error(str(exc))
                if self.scp is not None:
                    self.scp.set_accepted([])
                continue
            except HubUnavailableError as exc:
                logger.info("credential re-check postponed: %s", exc)
                continue
            self._adopt(identity)
