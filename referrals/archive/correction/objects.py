"""Rewriting one stored instance with corrected attributes: new object, then the row, then
the old object goes.

The new bytes are written under a fresh object key first; the row switches to it in one
conditional UPDATE (only if it still names the old object, so two runs never both win);
the old object is deleted once that commits. A row therefore always names an object that
exists, and `manage.py reconcile_storage` finds any object a crash left behind. No old
version is kept: the values before the change are in the Correction row and the audit trail.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import pydicom
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from pydicom.dataset import Dataset

from referrals.archive.dicomweb.retrieve import open_object
from referrals.models import Instance, instance_object_key

UTF8 = "ISO_IR 192"


class RewriteError(Exception):
    """The stored object could not be read or written again (message says why)."""


def element_json(keyword: str, value: str, charset: str = UTF8) -> dict[str, Any]:
    """The DICOM JSON of one attribute as Instance.metadata holds it."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    setattr(ds, keyword, value)
    body = ds.to_json_dict()
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    return body.get(tag, {"vr": pydicom.datadict.dictionary_VR(keyword)})


def metadata_tag(keyword: str) -> str:
    return f"{pydicom.datadict.tag_for_keyword(keyword):08X}"


def metadata_agrees(metadata: dict[str, Any], changes: dict[str, str]) -> bool:
    """Whether the instance's metadata already carries every changed value (a rerun)."""
    return all(
        _comparable(metadata.get(metadata_tag(k))) == _comparable(element_json(k, v))
        for k, v in changes.items()
    )


def _comparable(item: Any) -> Any:
    if not isinstance(item, dict):
        return None
    return item.get("Value") or None


def _needs_utf8(changes: dict[str, str]) -> bool:
    return any(not value.isascii() for value in changes.values())


def _rewritten_bytes(instance: Instance, changes: dict[str, str]) -> tuple[bytes, bool]:
    """The object's bytes with `changes` applied; and whether the character set became UTF-8."""
    try:
        with open_object(instance.object_key) as stream:
            ds = pydicom.dcmread(io.BytesIO(stream.read()))
    except Exception as exc:  # a missing or unreadable object: the correction says so
        raise RewriteError(f"instance {instance.sop_uid}: {exc.__class__.__name__}") from exc
    to_utf8 = _needs_utf8(changes) and str(ds.get("SpecificCharacterSet", "")) != UTF8
    if to_utf8:
        # Every text value is decoded with the old character set before the label changes,
        # so pydicom writes all of them again in UTF-8 (never old bytes under a new label).
        for _element in ds.iterall():
            pass
        ds.SpecificCharacterSet = UTF8
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception as exc:
        raise RewriteError(f"instance {instance.sop_uid}: {exc.__class__.__name__}") from exc
    return buffer.getvalue(), to_utf8


def instance_rewrite(*, instance: Instance, changes: dict[str, str]) -> bool:
    """Apply `changes` (keyword → new value) to one instance's object and metadata.

    Returns False when there was nothing to do (already rewritten, or rewritten by a
    concurrent run meanwhile). Never inside the caller's transaction: the old object may
    only go once the row naming the new one has committed.
    """
    if metadata_agrees(instance.metadata, changes):
        return False
    data, to_utf8 = _rewritten_bytes(instance, changes)
    old_key, old_id = instance.object_key, instance.object_id
    new_id = uuid.uuid4()
    new_key = instance_object_key(new_id)
    saved = default_storage.save(new_key, ContentFile(data))
    if saved != new_key:
        default_storage.delete(saved)
        raise RewriteError("storage could not keep the object under its key")
    metadata = dict(instance.metadata)
    charset = UTF8 if to_utf8 else None
    for keyword, value in changes.items():
        metadata[metadata_tag(keyword)] = element_json(keyword, value)
    if charset:
        metadata["00080005"] = {"vr": "CS", "Value": [charset]}
    try:
        with transaction.atomic():
            updated = Instance.objects.filter(pk=instance.pk, object_id=old_id).update(
                object_id=new_id,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                metadata=metadata,
                # Recomputed from the stored object when a resend meets it (ingest).
                dataset_sha256="",
            )
            if updated:
                transaction.on_commit(lambda: default_storage.delete(old_key))
    except BaseException:
        default_storage.delete(new_key)
        raise
    if not updated:
        default_storage.delete(new_key)
        return False
    instance.object_id, instance.metadata, instance.size_bytes = new_id, metadata, len(data)
    return True
