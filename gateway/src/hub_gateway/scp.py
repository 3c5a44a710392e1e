"""The gateway's DICOM side: a C-ECHO / C-STORE SCP that spools what the modalities send.

Only the calling AE titles the hub lists for this site may associate; everyone else gets
an A-ASSOCIATE-RJ (rejected-permanent, service-user, calling AE title not recognised). An
association must also call this gateway by its own AE title (or one of its aliases), else
A-ASSOCIATE-RJ with "called AE title not recognised": a modality configured for another
destination finds out at once instead of filing its studies at the wrong site.
Instances are passed through as received (no decoding, compressed transfer syntaxes
kept), and the C-STORE response is sent only once the instance is durable in the spool.
The same AE answers the scanners' Modality Worklist queries (C-FIND, worklist.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    Verification,
    register_uid,
    uid_to_service_class,
)
from pynetdicom.transport import ThreadedAssociationServer

from .spool import Spool
from .worklist import WorklistCache, handle_find

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110

# A-ASSOCIATE-RJ diagnostics (PS3.8 9.3.4, source: service user).
CALLING_AE_NOT_RECOGNISED = 0x03
CALLED_AE_NOT_RECOGNISED = 0x07

# Storage SOP classes PS3.4 has retired but that older modalities (township ultrasound
# machines, old gamma cameras) still send. pynetdicom's storage list holds the current
# classes only; these are passed through to the hub like any other instance.
RETIRED_STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.6": "UltrasoundImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.3": "UltrasoundMultiFrameImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.5": "NuclearMedicineImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.12.3": "XRayAngiographicBiPlaneImageStorage",
    "1.2.840.10008.5.1.4.1.1.77.1": "VLImageStorageTrial",
    "1.2.840.10008.5.1.4.1.1.77.2": "VLMultiFrameImageStorageTrial",
    "1.2.840.10008.5.1.1.29": "HardcopyGrayscaleImageStorage",
    "1.2.840.10008.5.1.1.30": "HardcopyColorImageStorage",
    "1.2.840.10008.5.1.1.27": "StoredPrintStorage",
    "1.2.840.10008.5.1.4.1.1.8": "StandaloneOverlayStorage",
    "1.2.840.10008.5.1.4.1.1.9": "StandaloneCurveStorage",
    "1.2.840.10008.5.1.4.1.1.10": "StandaloneModalityLUTStorage",
    "1.2.840.10008.5.1.4.1.1.11": "StandaloneVOILUTStorage",
    "1.2.840.10008.5.1.4.1.1.129": "StandalonePETCurveStorage",
    "1.2.840.10008.5.1.4.1.1.9.1": "WaveformStorageTrial",
    "1.2.840.10008.5.1.4.1.1.88.1": "TextSRStorageTrial",
    "1.2.840.10008.5.1.4.1.1.88.2": "AudioSRStorageTrial",
    "1.2.840.10008.5.1.4.1.1.88.3": "DetailSRStorageTrial",
    "1.2.840.10008.5.1.4.1.1.88.4": "ComprehensiveSRStorageTrial",
    "1.2.840.10008.5.1.4.34.1": "RTBeamsDeliveryInstructionStorageTrial",
}


def _register_retired_storage_classes() -> None:
    """pynetdicom dispatches a C-STORE by its SOP class: an unregistered one would be
    accepted at negotiation and then fail. Registering (its public API) makes them storage."""
    for uid, keyword in RETIRED_STORAGE_SOP_CLASSES.items():
        if uid_to_service_class(uid) is not StorageServiceClass:
            register_uid(uid, keyword, StorageServiceClass)


_register_retired_storage_classes()

# Longer than any AE title (16 characters), so no peer can ever match it: with it as the
# only entry, pynetdicom rejects every association (an empty list would accept them all).
REFUSE_ALL = "<no calling AE title is accepted>"

_LOSSLESS_COMPRESSED = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
)
_NATIVE = (
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)
# Pixel data by reference (JPIP) would reach the hub without its pixels: not accepted.
_REFERENCED_PIXELS = (
    "1.2.840.10008.1.2.4.94",
    "1.2.840.10008.1.2.4.95",
    "1.2.840.10008.1.2.4.204",
    "1.2.840.10008.1.2.4.205",
)


def accepted_transfer_syntaxes() -> list[str]:
    """In the order pynetdicom prefers them when a peer proposes several in one context.

    Lossless compression first (kept as sent, fewer bytes over the clinic's uplink), then
    the native encodings, then lossy compression: a lossy syntax is only chosen when the
    peer offered nothing else, i.e. the data already is lossy. Never a new loss.
    """
    ordered = [*_LOSSLESS_COMPRESSED, *_NATIVE]
    rest = [
        ts for ts in ALL_TRANSFER_SYNTAXES if ts not in ordered and ts not in _REFERENCED_PIXELS
    ]
    return [ts for ts in ordered if ts in ALL_TRANSFER_SYNTAXES] + rest


def _called_ae_title(event: Event) -> str:
    request = event.assoc.requestor.primitive
    return str(request.called_ae_title or "").strip() if request is not None else ""


class _SiteAE(AE):
    """An AE whose accepted calling AE titles can change while it runs (the hub says)."""

    accepted: tuple[str, ...] = ()

    @property
    def require_calling_aet(self) -> list[str]:
        return list(self.accepted) or [REFUSE_ALL]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        self.accepted = tuple(t.strip() for t in ae_titles if t.strip())


class StorageSCP:
    """Listens for one site's modalities and spools every instance they send."""

    def __init__(
        self,
        *,
        ae_title: str,
        bind_host: str,
        port: int,
        spool: Spool,
        max_associations: int = 16,
        min_free_bytes: int = 0,
        on_stored: Callable[[], None] | None = None,
        worklist: WorklistCache | None = None,
        called_ae_titles: Iterable[str] = (),
        accept_any_called_ae: bool = False,
    ) -> None:
        self.spool = spool
        self.address = (bind_host, port)
        self.min_free_bytes = min_free_bytes
        self.on_stored = on_stored
        self.ae = _SiteAE(ae_title=ae_title)
        # Its own title first, then the aliases a site configured (a modality set up for an
        # older gateway's title); pynetdicom compares the called title with the acceptor's.
        self.called_ae_titles = tuple(
            dict.fromkeys(t.strip() for t in (ae_title, *called_ae_titles) if t.strip())
        )
        self.accept_any_called_ae = accept_any_called_ae
        self.ae.require_called_aet = not accept_any_called_ae
        self.ae.maximum_associations = max_associations
        self.ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs from the modality
        syntaxes = accepted_transfer_syntaxes()
        self.ae.add_supported_context(Verification, syntaxes)
        # Supported contexts have no count limit (the 128 of PS3.8 binds what one peer
        # proposes), so every storage class, current and retired, is offered.
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            self.ae.add_supported_context(context.abstract_syntax, syntaxes)
        for uid in RETIRED_STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(uid, syntaxes)
        self._server: ThreadedAssociationServer | None = None
        self._announced = False
        # The site's scheduled exams, answered to the scanners' worklist queries (C-FIND).
        self.worklist = worklist
        if worklist is not None:
            self.ae.add_supported_context(
                ModalityWorklistInformationFind,
                [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian],
            )

    @property
    def accepted_calling_ae_titles(self) -> tuple[str, ...]:
        return self.ae.accepted

    def set_accepted(self, titles: Iterable[str]) -> None:
        new = tuple(t.strip() for t in titles if t and t.strip())
        if new == self.ae.accepted and self._announced:
            return
        self.ae.accepted = new
        self._announced = True
        if new:
            logger.info("accepting associations from calling AE titles: %s", ", ".join(new))
        else:
            logger.warning(
                "the hub lists no calling AE titles for this site: every "
                "association will be refused until an administrator adds one"
            )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        if self.worklist is not None:
            handlers.append((evt.EVT_C_FIND, self._on_find))
        self._server = self.ae.start_server(self.address, block=False, evt_handlers=handlers)
        logger.info("DICOM SCP %s listening on %s:%d", self.ae.ae_title, self.address[0], self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # --- event handlers (each association runs in its own thread) ------------------------

    def _on_accepted(self, event: Event) -> None:
        peer = event.assoc.requestor
        logger.info("association from %s at %s:%s", peer.ae_title, peer.address, peer.port)

    def _on_requested(self, event: Event) -> None:
        """An alias the site configured answers as the acceptor's title, so that pynetdicom's
        own called-AE check passes it (and refuses every other title with reason 7)."""
        called = _called_ae_title(event)
        if called in self.called_ae_titles:
            event.assoc.acceptor.ae_title = called

    def _on_rejected(self, event: Event) -> None:
        peer = event.assoc.requestor
        diagnostic = getattr(event.assoc.acceptor.primitive, "diagnostic", None)
        if diagnostic == CALLED_AE_NOT_RECOGNISED:
            logger.warning(
                "refused an association from calling AE %r at %s:%s: it called AE title "
                "%r, not this gateway (%s)",
                peer.ae_title,
                peer.address,
                peer.port,
                _called_ae_title(event),
                ", ".join(self.called_ae_titles),
            )
            return
        source = getattr(event.assoc.acceptor.primitive, "result_source", None)
        if source != 0x01 or diagnostic != CALLING_AE_NOT_RECOGNISED:
            logger.warning(
                "refused an association from calling AE %r at %s:%s (source %s, reason %s; "
                "at most %d associations at once)",
                peer.ae_title,
                peer.address,
                peer.port,
                source,
                diagnostic,
                self.ae.maximum_associations,
            )
            return
        logger.warning(
            "refused an association from calling AE %r at %s:%s: not one of "
            "this site's modalities (%s)",
            peer.ae_title,
            peer.address,
            peer.port,
            ", ".join(self.ae.accepted) or "none accepted",
        )

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_find(self, event: Event) -> Iterator[tuple[int, Any]]:
        assert self.worklist is not None  # the handler is bound only with a worklist
        yield from handle_find(event, self.worklist)

    def _on_store(self, event: Event) -> int:
        request = cast(C_STORE, event.request)
        data = getattr(request, "DataSet", None)
        if data is None:
            return CANNOT_UNDERSTAND
        calling = event.assoc.requestor.ae_title
        meta = event.file_meta
        meta.SourceApplicationEntityTitle = calling  # PS3.10 7.1: who sent it to us
        info = {
            "calling_ae": calling,
            "called_ae": event.assoc.acceptor.ae_title,
            "peer": f"{event.assoc.requestor.address}:{event.assoc.requestor.port}",
            "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "sop_class_uid": str(request.AffectedSOPClassUID),
            "sop_instance_uid": str(request.AffectedSOPInstanceUID),
            "transfer_syntax": str(meta.TransferSyntaxUID),
        }
        try:
            if self.min_free_bytes and self.spool.free_bytes() < self.min_free_bytes:
                logger.error(
                    "the spool's disk is nearly full: refusing %s from %s (0xA700)",
                    info["sop_instance_uid"],
                    calling,
                )
                return OUT_OF_RESOURCES
            with data.getbuffer() as view:
                self.spool.store([b"\x00" * 128, b"DICM", encode_file_meta(meta), view], info)
        except OSError as exc:
            logger.error(
                "could not spool %s from %s: %s (answered 0xA700)",
                info["sop_instance_uid"],
                calling,
                exc,
            )
            return OUT_OF_RESOURCES
        except Exception:
            logger.exception("could not spool %s from %s", info["sop_instance_uid"], calling)
            return PROCESSING_FAILURE
        logger.debug("spooled %s from %s", info["sop_instance_uid"], calling)
        if self.on_stored is not None:
            self.on_stored()
        return SUCCESS
