"""An instance's DICOM JSON (PS3.18 Annex F) as the hub stores it, without bulk data.

Large binary values become `BulkDataURI`s of the form `bulk:<path>`, where the path names
the value's place in the data set: `7FE00010` at the top level, `54000100/1/54001010` for the
value inside the second item of a sequence. The WADO-RS metadata view turns them into real
URLs. Pixel data is never read here.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

BULK_THRESHOLD = 1024
PIXEL_DATA = "7FE00010"


def _bulk_uri(element: DataElement) -> str:
    return f"bulk:{int(element.tag):08X}"


def bulk_path(prefix: str, tag: str) -> str:
    """The path of the value `tag` inside the item that `prefix` names ("" for the top)."""
    return f"{prefix}{tag.upper()}"


def with_bulk_paths(body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`body` with each `bulk:` reference naming its value's place, sequence items included.

    pydicom's handler sees an element, not where it sits: two waveform groups would both
    say `bulk:54001010`, and one URI would serve both.
    """
    out: dict[str, Any] = {}
    for tag, item in body.items():
        if isinstance(item, dict):
            item = dict(item)
            uri = item.get("BulkDataURI")
            if isinstance(uri, str) and uri.startswith("bulk:"):
                item["BulkDataURI"] = f"bulk:{bulk_path(prefix, tag)}"
            values = item.get("Value")
            if item.get("vr") == "SQ" and isinstance(values, list):
                item["Value"] = [
                    with_bulk_paths(v, f"{bulk_path(prefix, tag)}/{index}/")
                    if isinstance(v, dict)
                    else v
                    for index, v in enumerate(values)
                ]
        out[tag] = item
    return out


def dataset_metadata(ds: Dataset) -> dict[str, Any]:
    """The data set as DICOM JSON, bulk data by reference, plus its pixel data reference."""
    body: dict[str, Any] = with_bulk_paths(
        ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=_bulk_uri)
    )
    if "Rows" in ds and "Columns" in ds:
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1")))
        bits = int(ds.get("BitsAllocated", 16) or 16)
        vr = "OB" if ts.is_compressed or bits <= 8 else "OW"
        body[PIXEL_DATA] = {"vr": vr, "BulkDataURI": f"bulk:{PIXEL_DATA}"}
    return body
