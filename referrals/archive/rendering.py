"""Pixels out of the archive: frames as stored or decoded, rendered pictures, thumbnails.

Decoding is pydicom's with the pylibjpeg plugins (JPEG baseline/extended/lossless, JPEG-LS,
JPEG 2000, RLE). Rendering follows PS3.18 9.5 / PS3.3 C.11: modality LUT (rescale), VOI
window (the request's, else the instance's, else the frame's min/max), MONOCHROME1
inversion, colour to RGB, then viewport scaling and JPEG/PNG encoding with Pillow.
Everything that depends on a caller's input raises `RenderParamError` (a 400 naming the
parameter) or `RenderError` (a 4xx with its reason), never a 500.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import numpy as np
import pydicom
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F
from django.utils.translation import gettext as _
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import apply_color_lut, apply_voi, pack_bits, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
)

from referrals.models import Instance, Series

logger = logging.getLogger(__name__)

# Part of every ETag: bump it when the same input would render to different bytes.
RENDER_VERSION = "1"
JPEG = "image/jpeg"
PNG = "image/png"
OCTET_STREAM = "application/octet-stream"
DEFAULT_QUALITY = 90
THUMBNAIL_SIZE = 256
THUMBNAIL_QUALITY = 80
MAX_VIEWPORT = 4096
# A frame larger than this many samples is not decoded for rendering (memory bound).
MAX_SAMPLES = 80_000_000
WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")

# PS3.18 Table 8.7.3-2: the media type of each compressed transfer syntax's frames.
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": JPEG,  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": JPEG,  # JPEG Extended
    "1.2.840.10008.1.2.4.57": JPEG,  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": JPEG,  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "image/jls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "image/jls",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "image/jp2",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "image/jp2",  # JPEG 2000
    "1.2.840.10008.1.2.4.92": "image/jpx",  # JPEG 2000 Part 2 Lossless
    "1.2.840.10008.1.2.4.93": "image/jpx",  # JPEG 2000 Part 2
    "1.2.840.10008.1.2.4.201": "image/jphc",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "image/jphc",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "image/jphc",  # HTJ2K
    "1.2.840.10008.1.2.5": "image/dicom-rle",  # RLE Lossless
}
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


class RenderError(Exception):
    """A frame or picture that cannot be produced, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RenderParamError(RenderError):
    """A query parameter the hub cannot honour: always a 400 that names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(400, f"{param}: {message}")
        self.param = param


# --- Parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "linear"


@dataclass(frozen=True)
class Viewport:
    """PS3.18 8.3.5.1.3: the output box, optionally of a source region (negative = flipped)."""

    width: int
    height: int
    sx: float = 0.0
    sy: float = 0.0
    sw: float | None = None
    sh: float | None = None


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = JPEG
    window: Window | None = None
    viewport: Viewport | None = None
    quality: int = DEFAULT_QUALITY

    def cache_token(self) -> str:
        return repr((RENDER_VERSION, self.media_type, self.window, self.viewport, self.quality))


def _number(param: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RenderParamError(
            param, _("%(value)s is not a number.") % {"value": text[:40]}
        ) from None
    if not np.isfinite(value):
        raise RenderParamError(param, _("%(value)s is not a number.") % {"value": text[:40]})
    return value


def parse_window(text: str) -> Window:
    """`center,width[,function]`; function is linear (default), linear-exact or sigmoid."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise RenderParamError("window", _("expected center,width,function."))
    center = _number("window", parts[0])
    width = _number("window", parts[1])
    function = (parts[2] if len(parts) == 3 else "linear").lower().replace("_", "-") or "linear"
    if function not in WINDOW_FUNCTIONS:
        raise RenderParamError(
            "window",
            _("the function must be one of %(names)s.") % {"names": ", ".join(WINDOW_FUNCTIONS)},
        )
    if function == "linear" and width < 1:
        raise RenderParamError("window", _("a linear window is at least 1 wide."))
    if width <= 0:
        raise RenderParamError("window", _("the width must be positive."))
    return Window(center, width, function)


def _box_side(text: str) -> int:
    value = _number("viewport", text)
    if value != int(value) or not 1 <= value <= MAX_VIEWPORT:
        raise RenderParamError(
            "viewport",
            _("a width or height is a whole number from 1 to %(max)d.") % {"max": MAX_VIEWPORT},
        )
    return int(value)


def parse_viewport(text: str) -> Viewport:
    """`vw,vh` or `vw,vh,sx,sy,sw,sh` (sx, sy, sw, sh may be empty: the whole image)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise RenderParamError("viewport", _("expected vw,vh or vw,vh,sx,sy,sw,sh."))
    width, height = _box_side(parts[0]), _box_side(parts[1])
    if len(parts) == 2:
        return Viewport(width, height)
    sx = _number("viewport", parts[2]) if parts[2] else 0.0
    sy = _number("viewport", parts[3]) if parts[3] else 0.0
    sw = _number("viewport", parts[4]) if parts[4] else None
    sh = _number("viewport", parts[5]) if parts[5] else None
    if sx < 0 or sy < 0 or sw == 0 or sh == 0:
        raise RenderParamError("viewport", _("the source region is empty or outside the image."))
    return Viewport(width, height, sx, sy, sw, sh)


def parse_quality(text: str) -> int:
    value = _number("quality", text)
    if value != int(value) or not 1 <= value <= 100:
        raise RenderParamError("quality", _("a whole number from 1 to 100."))
    return int(value)


def render_options(
    query: Mapping[str, str],
    media_type: str,
    *,
    default_viewport: Viewport | None = None,
    default_quality: int = DEFAULT_QUALITY,
) -> RenderOptions:
    """The rendering a query string asks for (unknown parameters are ignored, PS3.18 8.3.5)."""
    window = parse_window(query["window"]) if query.get("window") else None
    viewport = parse_viewport(query["viewport"]) if query.get("viewport") else default_viewport
    quality = parse_quality(query["quality"]) if query.get("quality") else default_quality
    return RenderOptions(media_type=media_type, window=window, viewport=viewport, quality=quality)


# --- Reading frames ------------------------------------------------------------------------


def _open(instance: Instance) -> IO[bytes]:
    return default_storage.open(instance.object_key, "rb")


def _frame_index(instance: Instance, number: int) -> int:
    if not 1 <= number <= instance.number_of_frames:
        raise RenderError(
            404,
            _("Frame %(n)d does not exist; the instance has %(count)d frame(s).")
            % {"n": number, "count": instance.number_of_frames},
        )
    return number - 1


def _has_pixels(instance: Instance) -> None:
    if not instance.rows or not instance.columns:
        raise RenderError(404, _("The instance holds no image (no pixel data)."))


def _decoded(
    fp: IO[bytes], instance: Instance, index: int, *, raw: bool
) -> tuple[np.ndarray, Dataset]:
    """One frame decoded to an array, and the data set's other attributes."""
    rows, columns = instance.rows or 0, instance.columns or 0
    if rows * columns * 3 > MAX_SAMPLES:
        raise RenderError(
            413, _("The image is too large to render (%(r)d x %(c)d).") % {"r": rows, "c": columns}
        )
    try:
        if instance.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
            # pydicom reads deflated files only as a whole data set.
            whole: Dataset = pydicom.dcmread(fp)
            return pixel_array(whole, index=index, raw=raw), whole
        ds = Dataset()
        arr = pixel_array(cast(BinaryIO, fp), index=index, raw=raw, ds_out=ds)
        return arr, ds
    except RenderError:
        raise
    except (NotImplementedError, ImportError) as exc:
        raise RenderError(
            406,
            _("The hub cannot decode this transfer syntax (%(ts)s).")
            % {"ts": instance.transfer_syntax_uid},
        ) from exc
    except Exception as exc:  # the decoders raise many kinds on damaged data
        logger.info("frame %s of instance %s does not decode: %r", index + 1, instance.pk, exc)
        raise RenderError(422, _("The pixel data of this instance could not be decoded.")) from exc


@dataclass(frozen=True)
class FramePart:
    """One frame as WADO-RS sends it: bytes, their media type and transfer syntax."""

    data: bytes
    media_type: str
    transfer_syntax_uid: str


def stored_frame_media_type(instance: Instance) -> str:
    """What a frame of this instance is as stored: image/* when compressed, else octets."""
    return FRAME_MEDIA_TYPES.get(instance.transfer_syntax_uid, OCTET_STREAM)


def frames_retrieve(instance: Instance, numbers: list[int], *, as_stored: bool) -> list[FramePart]:
    """The frames `numbers` (from 1): uncompressed little endian, or as stored (compressed).

    Uncompressed little-endian files are sliced without decoding anything.
    """
    _has_pixels(instance)
    indexes = [_frame_index(instance, n) for n in numbers]
    ts = instance.transfer_syntax_uid
    stored_type = stored_frame_media_type(instance)
    parts = []
    with _open(instance) as fp:
        if ts in _NATIVE_LITTLE_ENDIAN:
            ds = _header(fp)
            if int(ds.get("BitsAllocated", 16) or 16) != 1:
                return [
                    FramePart(_native_slice(fp, ds, i), OCTET_STREAM, ExplicitVRLittleEndian)
                    for i in indexes
                ]
        if as_stored and stored_type != OCTET_STREAM:
            ds = _whole(fp)
            return [FramePart(_fragment(ds, i, instance), stored_type, ts) for i in indexes]
        for index in indexes:
            fp.seek(0)
            arr, ds = _decoded(fp, instance, index, raw=True)
            parts.append(
                FramePart(_little_endian_bytes(arr, ds), OCTET_STREAM, ExplicitVRLittleEndian)
            )
    return parts


def _header(fp: IO[bytes]) -> Dataset:
    try:
        return pydicom.dcmread(fp, defer_size=1024)
    except Exception as exc:
        raise RenderError(422, _("The stored instance could not be read.")) from exc


def _whole(fp: IO[bytes]) -> Dataset:
    try:
        ds = pydicom.dcmread(fp)
        ds.PixelData  # noqa: B018 - read it now, while the file is open
        return ds
    except Exception as exc:
        raise RenderError(422, _("The stored instance could not be read.")) from exc


def _native_slice(fp: IO[bytes], ds: Dataset, index: int) -> bytes:
    element = ds.get_item(0x7FE00010, keep_deferred=True)
    if element is None:
        raise RenderError(404, _("The instance holds no image (no pixel data)."))
    length = (
        int(ds.Rows)
        * int(ds.Columns)
        * int(ds.get("SamplesPerPixel", 1))
        * int(ds.BitsAllocated)
        // 8
    )
    start = index * length
    value_tell = getattr(element, "value_tell", None)
    if getattr(element, "value", None) is None and value_tell is not None:
        fp.seek(value_tell + start)
        data = fp.read(length)
    else:
        data = bytes(ds.PixelData)[start : start + length]
    if len(data) != length:
        raise RenderError(422, _("The stored pixel data is shorter than its frames."))
    return data


def _fragment(ds: Dataset, index: int, instance: Instance) -> bytes:
    try:
        offsets = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        return get_frame(
            ds.PixelData,
            index,
            extended_offsets=offsets,
            number_of_frames=instance.number_of_frames,
        )
    except Exception as exc:
        raise RenderError(
            422, _("The compressed frame could not be found in the stored pixel data.")
        ) from exc


def _little_endian_bytes(arr: np.ndarray, ds: Dataset) -> bytes:
    if int(ds.get("BitsAllocated", 16) or 16) == 1:
        return pack_bits(arr)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


# --- Rendering -----------------------------------------------------------------------------


def _functional(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """An attribute of an enhanced multi-frame image: per frame, then shared, then top level."""
    for groups, item_index in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        try:
            item = ds[groups][item_index]
            inner = item[sequence][0]
            if keyword in inner:
                return inner[keyword].value
        except (KeyError, IndexError, TypeError):
            continue
    return ds.get(keyword)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _rescaled(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    slope = _first(_functional(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(
        _functional(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    )
    out = arr.astype(np.float32)
    if slope not in (None, 1.0):
        out *= slope
    if intercept not in (None, 0.0):
        out += intercept
    return out


def instance_window(ds: Dataset, index: int = 0) -> Window | None:
    """The instance's own first VOI window (PS3.3 C.11.2), if it has a usable one."""
    center = _first(_functional(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_functional(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    function = str(_functional(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR")
    function = function.strip().lower().replace("_", "-")
    if function not in WINDOW_FUNCTIONS:
        function = "linear"
    if function == "linear" and width < 1:
        return None
    return Window(center, width, function)


def windowed(values: np.ndarray, window: Window) -> np.ndarray:
    """VOI LUT functions of PS3.3 C.11.2.1.2 / C.11.2.1.3 onto 0..255."""
    c, w = window.center, window.width
    if window.function == "linear-exact":
        out = ((values - c) / w + 0.5) * 255.0
    elif window.function == "sigmoid":
        out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (values - c) / w, -60, 60)))
    elif w <= 1:  # a linear window 1 wide is a threshold
        out = np.where(values <= c - 0.5, 0.0, 255.0)
    else:
        out = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _color(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        bits = 16 if arr.dtype.itemsize > 1 else 8
    else:
        bits = int(ds.get("BitsStored", 8) or 8)
    if arr.dtype == np.uint8 and bits <= 8:
        return arr
    top = float(2 ** min(bits, 32) - 1)
    return np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)


def frame_image(arr: np.ndarray, ds: Dataset, index: int, window: Window | None) -> Image.Image:
    """A decoded frame as an 8-bit picture: rescale, VOI, inversion; colour as RGB."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        return Image.fromarray(_color(arr, ds), mode="RGB")
    values = _rescaled(arr, ds, index)
    voi = window or instance_window(ds, index)
    if voi is not None:
        out = windowed(values, voi)
    elif "VOILUTSequence" in ds:
        out = _min_max(apply_voi(values, ds, index).astype(np.float32))
    else:
        out = _min_max(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return Image.fromarray(out, mode="L")


def _region(image: Image.Image, viewport: Viewport) -> Image.Image:
    sw = viewport.sw if viewport.sw is not None else image.width - viewport.sx
    sh = viewport.sh if viewport.sh is not None else image.height - viewport.sy
    left, right = sorted((viewport.sx, viewport.sx + sw))
    top, bottom = sorted((viewport.sy, viewport.sy + sh))
    box = (
        max(0, round(left)),
        max(0, round(top)),
        min(image.width, round(right)),
        min(image.height, round(bottom)),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        raise RenderParamError("viewport", _("the source region is empty or outside the image."))
    image = image.crop(box)
    if sw < 0:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sh < 0:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return image


def fitted(image: Image.Image, viewport: Viewport) -> Image.Image:
    """Scale (the region of) `image` to fit the viewport, keeping its aspect ratio."""
    if viewport.sw is not None or viewport.sh is not None or viewport.sx or viewport.sy:
        image = _region(image, viewport)
    scale = min(viewport.width / image.width, viewport.height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    # LANCZOS keeps thin structures when shrinking; enlarging needs no more than bilinear.
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    return image.resize(size, resample)


def encoded(image: Image.Image, options: RenderOptions) -> bytes:
    buffer = io.BytesIO()
    if options.media_type == PNG:
        image.save(buffer, "PNG", compress_level=3)
    else:
        image.save(buffer, "JPEG", quality=options.quality)
    return buffer.getvalue()


def frame_render(instance: Instance, frame_number: int, options: RenderOptions) -> bytes:
    """PS3.18 9.5 rendered frame: one frame as a JPEG or PNG picture."""
    _has_pixels(instance)
    index = _frame_index(instance, frame_number)
    with _open(instance) as fp:
        arr, ds = _decoded(fp, instance, index, raw=False)
    if arr.ndim == 4:  # never for one frame, but keep a damaged header from surprising us
        arr = arr[0]
    image = frame_image(arr, ds, index, options.window)
    if options.viewport is not None:
        image = fitted(image, options.viewport)
    return encoded(image, options)


def render_etag(instance: Instance, frame_number: int, options: RenderOptions) -> str:
    token = f"{instance.sha256}/{frame_number}/{options.cache_token()}"
    return hashlib.sha256(token.encode()).hexdigest()[:40]


# --- Thumbnails ----------------------------------------------------------------------------

THUMBNAIL_OPTIONS = RenderOptions(
    viewport=Viewport(THUMBNAIL_SIZE, THUMBNAIL_SIZE), quality=THUMBNAIL_QUALITY
)


def middle_frame(instance: Instance) -> int:
    return (instance.number_of_frames + 1) // 2


def series_middle_instance(series: Series) -> Instance | None:
    """The representative image of a series: its middle image by instance number."""
    images = Instance.objects.filter(
        series=series, rows__isnull=False, columns__isnull=False, rejected_at__isnull=True
    ).order_by(F("instance_number").asc(nulls_last=True), "pk")
    count = images.count()
    if not count:
        return None
    return images[count // 2]


def series_thumbnail_key(series: Series, instance: Instance) -> str:
    # Server ids only: the middle instance's id makes a new key when the series grows.
    return f"thumbnails/{series.pk}-{instance.pk}-{THUMBNAIL_SIZE}.jpg"


def series_thumbnail_ensure(series: Series) -> str:
    """The storage key of the series' thumbnail, rendering and storing it if missing.

    Safe to run twice or concurrently: the key is deterministic, a lost race deletes its
    own copy. Returns "" for a series without images. Raises RenderError if the middle
    image cannot be decoded.
    """
    instance = series_middle_instance(series)
    if instance is None:
        return ""
    key = series_thumbnail_key(series, instance)
    if not default_storage.exists(key):
        data = frame_render(instance, middle_frame(instance), THUMBNAIL_OPTIONS)
        saved = default_storage.save(key, ContentFile(data))
        if saved != key:  # another worker stored it a moment ago
            default_storage.delete(saved)
    if series.thumbnail_key != key:
        old = series.thumbnail_key
        Series.objects.filter(pk=series.pk).update(thumbnail_key=key)
        series.thumbnail_key = key
        if old and old.startswith("thumbnails/") and old != key:
            default_storage.delete(old)
    return key


def series_thumbnail(series: Series) -> tuple[bytes, str]:
    """The cached thumbnail's bytes and key (built on first use)."""
    key = series.thumbnail_key
    if key:
        try:
            with default_storage.open(key, "rb") as fp:
                return fp.read(), key
        except FileNotFoundError:
            pass  # removed or never finished: build it again below
    key = series_thumbnail_ensure(series)
    if not key:
        raise RenderError(404, _("The series holds no image."))
    with default_storage.open(key, "rb") as fp:
        return fp.read(), key


def frame_media_type_param(part: FramePart) -> str:
    return f"{part.media_type}; transfer-syntax={UID(part.transfer_syntax_uid)}"
