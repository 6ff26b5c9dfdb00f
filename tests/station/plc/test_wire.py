from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from station.plc.wire import (
    MAX_LINE,
    AckLine,
    HeartbeatLine,
    LineSplitter,
    VerdictLine,
    encode_ack,
    encode_heartbeat,
    encode_verdict,
    parse_line,
)

part_ids = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=","), min_size=1, max_size=64
).filter(lambda s: s == s.strip())


@given(part_ids, st.booleans(), st.integers(0, 65535))
def test_every_line_round_trips(part_id: str, accept: bool, reason: int) -> None:
    for data, expected in (
        (encode_verdict(part_id, accept, reason), VerdictLine(part_id, accept, reason)),
        (encode_ack(part_id), AckLine(part_id)),
        (encode_heartbeat(reason), HeartbeatLine(reason)),
    ):
        assert data.endswith(b"\r\n")
        assert LineSplitter().feed(data) == [data[:-2]]
        assert parse_line(data[:-2]) == expected


@given(st.binary(max_size=300))
def test_garbage_never_raises(raw: bytes) -> None:
    line = parse_line(raw)
    assert line is None or isinstance(line, VerdictLine | AckLine | HeartbeatLine)


@given(
    st.lists(
        st.sampled_from(["V", "K", "H", ",", "A", "R", "1", "65536", " ", "\r", "é", "x" * 70]), max_size=8
    )
)
def test_near_miss_lines_never_raise(parts: list[str]) -> None:
    parse_line("".join(parts).encode("utf-8"))


def test_malformed_lines_are_rejected() -> None:
    for raw in (
        b"",
        b"K",
        b"K,",
        b"K, P1",  # surrounding space: not the id that was sent
        b"K,P1,extra",
        b"k,P1",
        b"H,-1",
        b"H,65536",
        b"H,\xd9\xa3",  # non-ASCII digit
        b"V,P1,X,0",
        b"V,P1,A,",
        b"V,P1,A,70000",
        b"V,,A,0",
        b"K," + b"x" * 65,
    ):
        assert parse_line(raw) is None, raw


@given(st.binary(max_size=2000), st.lists(st.integers(1, 50), max_size=40))
def test_splitter_is_chunking_independent_and_bounded(stream: bytes, cuts: list[int]) -> None:
    whole = LineSplitter()
    expected = whole.feed(stream)
    chunked = LineSplitter()
    got: list[bytes] = []
    position = 0
    for cut in [*cuts, len(stream)]:
        got += chunked.feed(stream[position : position + cut])
        position += cut
        assert len(chunked._buffer) <= MAX_LINE
    if whole.discarded == 0 and chunked.discarded == 0:
        assert got == expected


def test_overlong_noise_is_discarded_and_the_next_line_survives() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"\x00" * (MAX_LINE + 1)) == []
    assert splitter.discarded == MAX_LINE + 1
    lines = splitter.feed(b"tail of noise\r\nK,P1\r\n")
    assert [parse_line(line) for line in lines] == [None, AckLine("P1")]
