"""The camera wire format: one ZeroMQ multipart message per part, [JSON header, pixel bytes].

Header (a UTF-8 JSON object, at most 64 KiB):

=============  =========================================================================================
``part_id``    str, 1-256 characters: the PLC's identity of the part, echoed in its verdict
``seq``        int >= 0: the sender's message counter; a gap is a frame that never arrived
``capture_ts`` float: sender wall clock (``time.time()``) at capture; now minus it is the latency
``product``    str, 1-256 characters: selects the recipe and normalcy prior
``encoding``   "raw" | "jpeg" | "png"
``dtype``      "uint8" | "uint16" (little-endian); the pixels' type before any compression
``shape``      [h, w] or [h, w, c] with c in 1, 3, 4; channels in RGB(A) order
``deadline_ms`` optional positive number: the part's own budget from capture
=============  =========================================================================================

Any other key is kept, unvalidated, in ``Frame.meta``. Raw pixels are the C-order array bytes, exactly
``h*w*c*itemsize`` of them; jpeg and png are complete files whose decoded size, channels and dtype must match
the header. Stations deliver RGB or grey uint8: uint16 frames are scaled by their high byte (a 12-bit camera
should shift its values up first), alpha is dropped.

imagezmq senders (``ImageSender.send_image`` / ``send_jpg``) use their own format, also decoded here:
a header ``{"msg", "dtype", "shape"}`` then the raw OpenCV (BGR) buffer, or ``{"msg"}`` then a JPEG (or PNG)
file. ``msg`` becomes the part id; ``"product:part_id"`` sets the product too. imagezmq sends no sequence
number or capture time: the receiver numbers the messages and uses its own receive time.

Decoding never raises. A message that cannot become an image still becomes a `Frame` with ``error`` set and
whatever identity could be read, so the part gets its fail-safe reject instead of vanishing. Sizes are checked
before any pixel is touched (declared shape against ``max_pixels``, message bytes against
``max_message_bytes``, and a compressed file's own dimensions, read from its PNG IHDR or JPEG SOF header), so
a forged header or a decompression bomb costs nothing.

Cost: the station calls ``receive`` from its ingest thread, which does nothing else, so decoding stays there
rather than in another hop. Raw frames cost no copy (``np.frombuffer`` over the ZeroMQ frame received with
``copy=False``; the array keeps that frame, and so the message's memory, alive for as long as the image is
referenced); jpeg and png cost one OpenCV decode (a few ms for a megapixel JPEG, GIL released). imagezmq raw
frames cost one BGR-to-RGB copy.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from station.camera.base import Frame
from tools.image import ImageError, as_uint8

log = logging.getLogger(__name__)

Encoding = Literal["raw", "jpeg", "png"]
ENCODINGS: tuple[str, ...] = ("raw", "jpeg", "png")
DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2")}
MAX_HEADER_BYTES = 64 * 1024
MAX_TEXT = 256
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# JPEG start-of-frame markers (they carry the dimensions); C4, C8 and CC share the range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_IMAGEZMQ_KEYS = frozenset({"msg", "dtype", "shape"})

Parts = Sequence[Any]  # bytes, memoryview or zmq.Frame: anything exposing a buffer


@dataclass(frozen=True)
class Limits:
    """What one message may cost; checked before any pixel is decoded."""

    max_message_bytes: int = 128 * 2**20
    max_pixels: int = 32 * 2**20


class WireError(ValueError):
    """Why a message cannot become an image; its text becomes ``Frame.error``."""


_unknown_ids = itertools.count(1)


def _unknown_part_id() -> str:
    """An id for a frame whose header names none, unique in this process, so its fail-safe can be logged."""
    return f"unknown-{next(_unknown_ids)}"


# ---------------------------------------------------------------------------------------------- encoding


def encode_frame(
    image: np.ndarray,
    *,
    part_id: str,
    seq: int,
    product: str,
    capture_ts: float | None = None,
    encoding: Encoding = "raw",
    deadline_ms: float | None = None,
    jpeg_quality: int = 95,
    meta: Mapping[str, Any] | None = None,
) -> list[bytes | memoryview]:
    """The two message parts for ``image`` (RGB(A) or grey, uint8 or uint16).

    A raw payload is a memoryview of the (contiguous) image: sending it costs no copy, so do not modify the
    image until the message has been sent. ``capture_ts`` defaults to now. Raises ValueError for an image or
    field the format cannot carry (the sender's bug, unlike a receiver's input).
    """
    image = np.ascontiguousarray(image)
    if image.dtype.name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {image.dtype}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if encoding == "jpeg" and (image.dtype != np.uint8 or (image.ndim == 3 and image.shape[2] == 4)):
        raise ValueError(f"jpeg carries uint8 grey or RGB only, not {image.dtype} {image.shape}")
    header: dict[str, Any] = dict(meta or {})
    clash = sorted(header.keys() & HEADER_KEYS)
    if clash:
        raise ValueError(f"meta may not set header fields: {', '.join(clash)}")
    header.update(
        part_id=part_id,
        seq=seq,
        capture_ts=time.time() if capture_ts is None else capture_ts,
        product=product,
        encoding=encoding,
        dtype=image.dtype.name,
        shape=list(image.shape),
    )
    if deadline_ms is not None:
        header["deadline_ms"] = deadline_ms
    _fields(header)  # the same checks a receiver makes, so a bad field fails here, at its source
    if encoding == "raw":
        payload: bytes | memoryview = image.astype(DTYPES[image.dtype.name], copy=False).data.cast("B")
    else:
        payload = compress(_to_bgr(image), encoding, jpeg_quality)
    return [json.dumps(header).encode(), payload]


def encode_imagezmq(
    image: np.ndarray, msg: str, encoding: Encoding = "raw", jpeg_quality: int = 95
) -> list[bytes | memoryview]:
    """What imagezmq's ``send_image`` (raw) or ``send_jpg`` (jpeg, png) puts on the wire for an RGB ``image``.

    imagezmq carries OpenCV images, so the pixels go out in BGR order, as a real imagezmq sender's would.
    """
    bgr = np.ascontiguousarray(_to_bgr(image))
    if encoding == "raw":
        header = {"msg": msg, "dtype": bgr.dtype.name, "shape": list(bgr.shape)}
        return [json.dumps(header).encode(), bgr.data.cast("B")]
    return [json.dumps({"msg": msg}).encode(), compress(bgr, encoding, jpeg_quality)]


def compress(bgr: np.ndarray, encoding: Encoding, jpeg_quality: int = 95) -> bytes:
    """A JPEG or PNG file of an OpenCV-ordered (BGR) image."""
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if encoding == "jpeg" else []
    try:
        ok, buffer = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", bgr, params)
    except cv2.error as error:
        ok, buffer = False, error
    if not ok:
        raise ValueError(f"cannot encode a {bgr.dtype} image of shape {bgr.shape} as {encoding}: {buffer}")
    return buffer.tobytes()


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    return image


# ---------------------------------------------------------------------------------------------- decoding


def decode_message(parts: Parts, received_ts: float, limits: Limits = Limits()) -> Frame:
    """A `Frame` from a station-format message; never raises (see the module docstring)."""
    header: dict[str, Any] = {}
    try:
        header = _header(parts)
        payload = _payload(parts, limits)
        fields = _fields(header)
        shape: list[int] = fields["shape"]
        _check_pixels(shape[0], shape[1], limits)
        dtype = DTYPES[fields["dtype"]]
        if fields["encoding"] == "raw":
            image = _raw(payload, dtype, shape)
        else:
            image = _compressed(payload, fields["encoding"], limits)
            _check_match(image, dtype, shape)
        return Frame(
            part_id=fields["part_id"],
            seq=fields["seq"],
            capture_ts=fields["capture_ts"],
            product=fields["product"],
            image=_finish(image),
            deadline_ms=fields["deadline_ms"],
            received_ts=received_ts,
            decoded_ts=time.time(),
            meta=_extra(header, HEADER_KEYS),
        )
    except Exception as error:
        identity = {key: _salvage(header, key) for key in ("seq", "capture_ts", "product", "deadline_ms")}
        return _unusable(
            error, received_ts, _salvage(header, "part_id"), meta=_extra(header, HEADER_KEYS), **identity
        )


def decode_imagezmq(
    parts: Parts, received_ts: float, seq: int, limits: Limits = Limits(), bgr: bool = True
) -> Frame:
    """A `Frame` from an imagezmq message, numbered ``seq`` by the receiver; never raises.

    ``bgr``: the raw pixels are in OpenCV's BGR order (what imagezmq senders send); JPEG and PNG files are
    decoded to RGB regardless, since the file itself says how its channels are ordered.
    """
    header: dict[str, Any] = {}
    try:
        header = _header(parts)
        payload = _payload(parts, limits)
        product, part_id = _imagezmq_identity(header, seq)
        if "dtype" in header or "shape" in header:
            dtype_name, shape = _field(header, "dtype"), _field(header, "shape")
            _check_pixels(shape[0], shape[1], limits)
            image = _raw(payload, DTYPES[dtype_name], shape)
            if bgr:
                image = _from_opencv(image)
        else:
            image = _compressed(payload, _sniff(payload), limits)
        return Frame(
            part_id=part_id,
            seq=seq,
            capture_ts=received_ts,
            product=product,
            image=_finish(image),
            received_ts=received_ts,
            decoded_ts=time.time(),
            meta={"wire": "imagezmq", "msg": header["msg"], **_extra(header, _IMAGEZMQ_KEYS)},
        )
    except Exception as error:
        try:
            product, part_id = _imagezmq_identity(header, seq)
        except WireError:
            product, part_id = None, None
        return _unusable(
            error,
            received_ts,
            part_id,
            seq=seq,
            capture_ts=received_ts,
            product=product,
            meta={"wire": "imagezmq"},
        )


def _unusable(error: Exception, received_ts: float, part_id: str | None, **identity: Any) -> Frame:
    if isinstance(error, WireError):
        reason = str(error)
    else:  # a decoder bug or an input nobody foresaw: still a frame, but worth a traceback
        log.warning("unexpected failure decoding a camera message", exc_info=error)
        reason = f"unexpected decode failure: {error!r}"[:500]
    return Frame(
        part_id=part_id or _unknown_part_id(),
        image=None,
        received_ts=received_ts,
        decoded_ts=time.time(),
        error=reason,
        **identity,
    )


def _view(part: Any) -> memoryview:
    """The bytes of one message part, without copying."""
    try:
        view = memoryview(part)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    except (TypeError, ValueError) as error:
        raise WireError(f"message part is not a byte buffer ({type(part).__name__})") from error


def _header(parts: Parts) -> dict[str, Any]:
    if len(parts) == 0:
        raise WireError("empty message")
    raw = _view(parts[0])
    if raw.nbytes > MAX_HEADER_BYTES:
        raise WireError(f"header of {raw.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(raw))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError; deep nesting recurses
        raise WireError(f"header is not JSON: {error}"[:300]) from None
    if not isinstance(header, dict):
        raise WireError(f"header is a JSON {type(header).__name__}, not an object")
    return header


def _payload(parts: Parts, limits: Limits) -> memoryview:
    if len(parts) != 2:
        raise WireError(f"expected 2 message parts (header, pixels), got {len(parts)}")
    payload = _view(parts[1])
    size = _view(parts[0]).nbytes + payload.nbytes
    if size > limits.max_message_bytes:
        raise WireError(f"message of {size} bytes exceeds max_message_bytes {limits.max_message_bytes}")
    return payload


# Field checks: each returns the value (normalised) or None when it is unusable, plus what was expected.
def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else None


def _counter(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _shape(value: Any) -> list[int] | None:
    if not isinstance(value, list) or len(value) not in (2, 3):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value):
        return None
    return value if len(value) == 2 or value[2] in (1, 3, 4) else None


def _one_of(choices: Sequence[str]) -> Callable[[Any], str | None]:
    return lambda value: value if isinstance(value, str) and value in choices else None


_CHECKS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "part_id": (_text, f"a string of 1-{MAX_TEXT} characters"),
    "seq": (_counter, "an integer >= 0"),
    "capture_ts": (_number, "a finite number (seconds since the epoch)"),
    "product": (_text, f"a string of 1-{MAX_TEXT} characters"),
    "encoding": (_one_of(ENCODINGS), " | ".join(ENCODINGS)),
    "dtype": (_one_of(tuple(DTYPES)), " | ".join(DTYPES)),
    "shape": (_shape, "[h, w] or [h, w, c] with positive integers and c in 1, 3, 4"),
}
_OPTIONAL: dict[str, tuple[Callable[[Any], Any], str]] = {"deadline_ms": (_positive, "a positive number")}
HEADER_KEYS = frozenset({*_CHECKS, *_OPTIONAL})


def _field(header: Mapping[str, Any], key: str) -> Any:
    """A checked header field; an optional one may be absent or null (None)."""
    optional = key in _OPTIONAL
    check, expected = (_OPTIONAL if optional else _CHECKS)[key]
    if key not in header or (optional and header[key] is None):
        if optional:
            return None
        raise WireError(f"header lacks {key!r}")
    value = check(header[key])
    if value is None:
        raise WireError(f"header {key!r} must be {expected}, got {json.dumps(header[key])[:60]}")
    return value


def _fields(header: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _field(header, key) for key in (*_CHECKS, *_OPTIONAL)}


def _salvage(header: Mapping[str, Any], key: str) -> Any:
    """A field that is usable on its own in a message that is not: the fail-safe still names its part."""
    try:
        return _field(header, key) if key in header else None
    except WireError:
        return None


def _extra(header: Mapping[str, Any], known: Any) -> dict[str, Any]:
    return {key: value for key, value in header.items() if key not in known}


def _imagezmq_identity(header: Mapping[str, Any], seq: int) -> tuple[str | None, str]:
    """(product, part_id) from imagezmq's ``msg``: "product:part_id", or the whole text as the part id."""
    msg = header.get("msg")
    if not isinstance(msg, str):
        raise WireError(f"imagezmq header 'msg' must be a string, got {json.dumps(msg)[:60]}")
    product, colon, part_id = msg.partition(":")
    if colon and _text(product) and _text(part_id):
        return product, part_id
    return None, _text(msg) or f"imagezmq-{seq}"


def _check_pixels(height: int, width: int, limits: Limits) -> None:
    if height * width > limits.max_pixels:
        raise WireError(f"frame of {width}x{height} px exceeds max_pixels {limits.max_pixels}")


def _raw(payload: memoryview, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    expected = math.prod(shape) * dtype.itemsize
    if payload.nbytes != expected:
        problem = "truncated" if payload.nbytes < expected else "too long"
        raise WireError(
            f"pixel buffer {problem}: {payload.nbytes} bytes, shape {shape} of {dtype.name} needs {expected}"
        )
    return np.frombuffer(payload, dtype).reshape(shape)


def _sniff(payload: memoryview) -> Encoding:
    head = bytes(payload[:8])
    if head.startswith(JPEG_SOI):
        return "jpeg"
    if head == PNG_SIGNATURE:
        return "png"
    raise WireError("imagezmq payload is neither a JPEG nor a PNG file, and the header has no dtype/shape")


def _compressed_size(payload: memoryview, encoding: Encoding) -> tuple[int, int]:
    """(height, width) read from the file's own header, before anything is decompressed."""
    n = payload.nbytes
    if encoding == "png":
        if n < 24 or bytes(payload[:8]) != PNG_SIGNATURE or bytes(payload[12:16]) != b"IHDR":
            raise WireError("payload is not a PNG file")
        width, height = struct.unpack(">II", payload[16:24])
        return height, width
    if bytes(payload[:2]) != JPEG_SOI:
        raise WireError("payload is not a JPEG file")
    pos = 2
    while pos + 4 <= n:  # walk the marker segments up to the first start-of-frame
        if payload[pos] != 0xFF:
            break
        marker = payload[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            pos += 2
        elif marker in _JPEG_SOF and pos + 9 <= n:
            height, width = struct.unpack(">HH", payload[pos + 5 : pos + 9])
            return height, width
        elif marker == 0xDA:  # entropy-coded data starts: no frame header came first
            break
        else:
            pos += 2 + ((payload[pos + 2] << 8) | payload[pos + 3])
    raise WireError("JPEG has no readable frame header (truncated or corrupt)")


def _compressed(payload: memoryview, encoding: Encoding, limits: Limits) -> np.ndarray:
    height, width = _compressed_size(payload, encoding)
    _check_pixels(height, width, limits)
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise WireError(f"undecodable {encoding} ({payload.nbytes} bytes, truncated or corrupt)")
    return _from_opencv(image)


def _from_opencv(image: np.ndarray) -> np.ndarray:
    """RGB(A)/grey from OpenCV's BGR(A)/grey."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _check_match(image: np.ndarray, dtype: np.dtype, shape: list[int]) -> None:
    channels = image.shape[2] if image.ndim == 3 else 1
    declared = shape[2] if len(shape) == 3 else 1
    if list(image.shape[:2]) != shape[:2] or channels != declared or image.dtype != dtype:
        raise WireError(
            f"decoded image is {image.dtype} {list(image.shape)}, header says {dtype.name} {shape}"
        )


def _finish(image: np.ndarray) -> np.ndarray:
    """The frame as every tool expects it: RGB or grey uint8, C-contiguous (dropping alpha leaves a view)."""
    try:
        return np.ascontiguousarray(as_uint8(image))
    except ImageError as error:
        raise WireError(str(error)) from None
