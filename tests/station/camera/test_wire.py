"""The wire format without sockets: round trips, each malformed input class, decoding that never raises."""

from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station.camera.wire import (
    Limits,
    decode_imagezmq,
    decode_message,
    encode_frame,
    encode_imagezmq,
)

_Y, _X = np.mgrid[0:48, 0:64]
IMAGE = np.stack([_X * 4, _Y * 5, _X + _Y * 2], axis=-1).astype(np.uint8)  # smooth, so JPEG stays close


def header(**overrides) -> bytes:
    fields = {
        "part_id": "P-17",
        "seq": 17,
        "capture_ts": 1_700_000_000.5,
        "product": "hole_plate",
        "encoding": "raw",
        "dtype": "uint8",
        "shape": [48, 64, 3],
        **overrides,
    }
    return json.dumps({key: value for key, value in fields.items() if value is not ...}).encode()


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
def test_round_trip_keeps_pixels_and_header(encoding: str) -> None:
    parts = encode_frame(
        IMAGE,
        part_id="P-1",
        seq=3,
        product="hole_plate",
        capture_ts=1234.5,
        encoding=encoding,
        deadline_ms=80,
        meta={"line": 2},
    )
    before = time.time()
    frame = decode_message(parts, received_ts=before)
    assert frame.error is None
    assert (frame.part_id, frame.seq, frame.capture_ts, frame.product) == ("P-1", 3, 1234.5, "hole_plate")
    assert frame.deadline_ms == 80 and frame.meta == {"line": 2}
    assert frame.received_ts == before <= frame.decoded_ts
    assert frame.image.dtype == np.uint8 and frame.image.shape == IMAGE.shape
    error = np.abs(frame.image.astype(int) - IMAGE).mean()
    assert error == 0 if encoding != "jpeg" else error < 3  # RGB order survives BGR codecs


def test_raw_frames_are_not_copied() -> None:
    parts = encode_frame(IMAGE, part_id="P", seq=0, product="x")
    frame = decode_message(parts, 0.0)
    assert np.shares_memory(frame.image, np.frombuffer(parts[1], np.uint8))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (IMAGE[:, :, 0], IMAGE[:, :, 0]),  # grey
        (IMAGE[:, :, :1], IMAGE[:, :, 0]),  # one channel
        (np.dstack([IMAGE, np.full(IMAGE.shape[:2], 7, np.uint8)]), IMAGE),  # RGBA: alpha dropped
        (IMAGE.astype(np.uint16) * 256 + 255, IMAGE),  # uint16: the high byte
    ],
    ids=["grey", "one-channel", "rgba", "uint16"],
)
@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_other_layouts_become_rgb_or_grey_uint8(
    image: np.ndarray, expected: np.ndarray, encoding: str
) -> None:
    frame = decode_message(encode_frame(image, part_id="P", seq=0, product="x", encoding=encoding), 0.0)
    assert frame.error is None
    assert frame.image.flags.c_contiguous
    np.testing.assert_array_equal(frame.image, expected)


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match="dtype"):
        encode_frame(IMAGE.astype(np.float32), part_id="P", seq=0, product="x")
    with pytest.raises(ValueError, match="meta may not set"):
        encode_frame(IMAGE, part_id="P", seq=0, product="x", meta={"seq": 1})
    with pytest.raises(ValueError, match="'part_id'"):
        encode_frame(IMAGE, part_id="", seq=0, product="x")
    with pytest.raises(ValueError, match="jpeg"):
        encode_frame(IMAGE.astype(np.uint16), part_id="P", seq=0, product="x", encoding="jpeg")


def _bomb() -> bytes:
    """A small PNG whose header claims 100000 x 100000 px."""
    data = bytearray(png(IMAGE))
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    return bytes(data)


PIXELS = IMAGE.tobytes()
# (case, message parts, fragment of the error, part id the error frame carries: None = generated)
MALFORMED = [
    ("empty message", [], "empty message", None),
    ("not JSON", [b"\xff\xfe garbage", PIXELS], "not JSON", None),
    ("JSON array", [b"[1, 2]", PIXELS], "JSON list, not an object", None),
    ("deeply nested", [b"[" * 100_000 + b"]" * 100_000, PIXELS], "exceeds", None),
    ("recursion", [b"[" * 30_000 + b"]" * 30_000, PIXELS], "not JSON", None),
    ("header only", [header()], "expected 2 message parts", "P-17"),
    ("three parts", [header(), PIXELS, b"x"], "expected 2 message parts", "P-17"),
    ("missing field", [header(product=...), PIXELS], "lacks 'product'", "P-17"),
    ("missing part id", [header(part_id=...), PIXELS], "lacks 'part_id'", None),
    ("wrong type", [header(seq="17"), PIXELS], "'seq' must be an integer", "P-17"),
    ("bool as int", [header(seq=True), PIXELS], "'seq' must be an integer", "P-17"),
    (
        "NaN time",
        [header().replace(b"1700000000.5", b"NaN"), PIXELS],
        "'capture_ts' must be a finite",
        "P-17",
    ),
    ("huge int time", [header(capture_ts=10**400), PIXELS], "'capture_ts' must be a finite", "P-17"),
    ("bad encoding", [header(encoding="bmp"), PIXELS], "'encoding' must be", "P-17"),
    ("bad deadline", [header(deadline_ms=-5), PIXELS], "'deadline_ms' must be a positive", "P-17"),
    ("two channels", [header(shape=[48, 64, 2]), PIXELS], "'shape' must be", "P-17"),
    ("flat shape", [header(shape=[3072]), PIXELS], "'shape' must be", "P-17"),
    ("truncated", [header(), PIXELS[:-1]], "truncated", "P-17"),
    ("too long", [header(), PIXELS + b"\0"], "too long", "P-17"),
    ("too small", [header(shape=[1, 1, 3]), b"abc"], "too small", "P-17"),
    ("too many pixels", [header(shape=[10_000, 10_000, 3]), PIXELS], "exceeds max_pixels", "P-17"),
    ("too many bytes", [header(shape=[2048, 2048]), bytes(2048 * 2048)], "exceeds max_message_bytes", "P-17"),
    ("PNG bomb", [header(encoding="png"), _bomb()], "exceeds max_pixels", "P-17"),
    ("PNG sent as JPEG", [header(encoding="jpeg"), png(IMAGE)], "not a JPEG", "P-17"),
    ("truncated JPEG", [header(encoding="jpeg"), jpeg(IMAGE)[:300]], "undecodable jpeg", "P-17"),
    ("JPEG head only", [header(encoding="jpeg"), jpeg(IMAGE)[:20]], "no readable frame header", "P-17"),
    ("corrupt PNG", [header(encoding="png"), png(IMAGE)[:40] + bytes(100)], "undecodable png", "P-17"),
    (
        "PNG of another size",
        [header(encoding="png"), png(IMAGE[:24])],
        "header says uint8 [48, 64, 3]",
        "P-17",
    ),
    (
        "PNG grey for RGB",
        [header(encoding="png"), png(IMAGE[:, :, 0])],
        "decoded image is uint8 [48, 64]",
        "P-17",
    ),
    ("not a buffer", [header(), 12345], "not a byte buffer", "P-17"),
]


@pytest.mark.parametrize(
    ("parts", "fragment", "part_id"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_messages_become_error_frames(parts: list, fragment: str, part_id: str | None) -> None:
    frame = decode_message(parts, 5.0, Limits(max_message_bytes=2**20, max_pixels=2**22))
    assert frame.image is None
    assert frame.error is not None and fragment in frame.error, frame.error
    assert not frame.error.startswith("unexpected")
    assert frame.received_ts == 5.0
    if part_id is None:
        assert frame.part_id.startswith("unknown-")
    else:
        assert frame.part_id == part_id


def test_error_frames_keep_every_field_that_was_readable() -> None:
    frame = decode_message([header(deadline_ms=40, line=3), PIXELS[:10]], 0.0)
    assert frame.error and (frame.seq, frame.capture_ts, frame.product) == (17, 1_700_000_000.5, "hole_plate")
    assert frame.deadline_ms == 40 and frame.meta == {"line": 3}
    unknown = [decode_message([b"nope"], 0.0).part_id for _ in range(2)]
    assert unknown[0] != unknown[1]


@pytest.mark.parametrize("encoding", ["raw", "jpeg", "png"])
def test_imagezmq_messages(encoding: str) -> None:
    frame = decode_imagezmq(encode_imagezmq(IMAGE, "hole_plate:P-9", encoding), 12.0, seq=4)
    assert frame.error is None
    assert (frame.part_id, frame.product, frame.seq, frame.capture_ts) == ("P-9", "hole_plate", 4, 12.0)
    assert np.abs(frame.image.astype(int) - IMAGE).mean() < (3 if encoding == "jpeg" else 1e-9)
    assert frame.meta == {"wire": "imagezmq", "msg": "hole_plate:P-9"}


def test_imagezmq_identity_and_errors() -> None:
    assert decode_imagezmq(encode_imagezmq(IMAGE, "cam-1"), 0.0, 1).part_id == "cam-1"
    assert decode_imagezmq(encode_imagezmq(IMAGE, ""), 0.0, 8).part_id == "imagezmq-8"
    rgb_sender = decode_imagezmq(encode_frame(IMAGE, part_id="P", seq=0, product="x")[:1], 0.0, 1)
    assert "expected 2 message parts" in rgb_sender.error
    not_a_file = decode_imagezmq([b'{"msg": "a:b"}', b"GIF89a...."], 0.0, 2)
    assert "neither a JPEG nor a PNG" in not_a_file.error
    assert (not_a_file.part_id, not_a_file.product, not_a_file.seq) == ("b", "a", 2)
    short = decode_imagezmq(
        [json.dumps({"msg": "a:b", "dtype": "uint8", "shape": [48, 64, 3]}), b"xx"], 0.0, 3
    )
    assert "not a byte buffer" in short.error  # a str is not bytes
    truncated = decode_imagezmq([encode_imagezmq(IMAGE, "a:b")[0], b"xx"], 0.0, 3)
    assert "truncated" in truncated.error
    assert decode_imagezmq([b'{"msg": 5}', b""], 0.0, 6).part_id.startswith("unknown-")
    as_sent = [json.dumps({"msg": "x", "dtype": "uint8", "shape": [48, 64, 3]}).encode(), IMAGE.tobytes()]
    np.testing.assert_array_equal(decode_imagezmq(as_sent, 0.0, 1).image, IMAGE[:, :, ::-1])
    np.testing.assert_array_equal(decode_imagezmq(as_sent, 0.0, 1, bgr=False).image, IMAGE)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_field_names = st.sampled_from(
    ["part_id", "seq", "capture_ts", "product", "encoding", "dtype", "shape", "msg"]
)
_plausible = {
    "part_id": st.just("P"),
    "seq": st.integers(-2, 3),
    "capture_ts": st.floats(),
    "product": st.just("x"),
    "encoding": st.sampled_from(["raw", "jpeg", "png", "gif"]),
    "dtype": st.sampled_from(["uint8", "uint16", "float32"]),
    "shape": st.lists(st.integers(-1, 6), min_size=0, max_size=4),
    "msg": st.text(max_size=6),
}
_headers = st.builds(
    lambda base, extra: json.dumps({**base, **extra}).encode(),
    st.fixed_dictionaries({}, optional=_plausible),
    st.dictionaries(_field_names, _json, max_size=2),
)
_payloads = st.binary(max_size=300) | st.sampled_from([png(IMAGE[:4, :6]), jpeg(IMAGE[:4, :6])]).flatmap(
    lambda data: st.integers(0, len(data)).map(lambda cut: data[:cut])
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.binary(max_size=64) | _headers | _payloads, max_size=3))
def test_decoding_never_raises(parts: list[bytes]) -> None:
    for frame in (decode_message(parts, 1.0), decode_imagezmq(parts, 1.0, 1)):
        if frame.error is None:
            assert frame.image is not None and frame.image.dtype == np.uint8
        else:
            assert frame.image is None and frame.part_id
            assert not frame.error.startswith("unexpected"), frame.error
