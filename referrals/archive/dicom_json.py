"""An instance's DICOM JSON (PS3.18 Annex F) as the hub stores it, without bulk data.

Large binary values become `BulkDataURI`s of the form `bulk:<tag>`; the WADO-RS metadata
view turns them into real URLs. Pixel data is never read here.
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


def dataset_metadata(ds: Dataset) -> dict[str, Any]:
    """The data set as DICOM JSON, bulk data by reference, plus its pixel data reference."""
    body: dict[str, Any] = ds.to_json_dict(
        bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=_bulk_uri
    )
    if "Rows" in ds and "Columns" in ds:
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1")))
        bits = int(ds.get("BitsAllocated", 16) or 16)
        vr = "OB" if ts.is_compressed or bits <= 8 else "OW"
        body[PIXEL_DATA] = {"vr": vr, "BulkDataURI": f"bulk:{PIXEL_DATA}"}
    return body
