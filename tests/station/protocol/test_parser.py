"""The parser is total and round-trips everything the protocol writes."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.protocol import Answer, ParseError, ToolCall, ToolCalls, parse_turn

TAGS = ["<tool_call>", "</tool_call>", "<answer>", "</answer>", "<think>", "</think>", "<|im_end|>", "{", "}"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def assert_typed(result):
    assert isinstance(result, (ToolCalls, Answer, ParseError))
    if isinstance(result, ParseError):
        assert result.code and result.message


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_text_yields_a_typed_result(text):
    assert_typed(parse_turn(text))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TAGS) | st.text(max_size=12), max_size=20).map("".join))
def test_tag_soup_yields_a_typed_result(text):
    assert_typed(parse_turn(text))


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["<tool_call>{}</tool_call>", "<answer>{}</answer>"]))
def test_arbitrary_json_bodies_yield_a_typed_result(value, wrapper):
    assert_typed(parse_turn(wrapper.replace("{}", json.dumps(value))))


@settings(max_examples=200, deadline=None)
@given(
    anomaly=st.booleans(),
    defect=st.none() | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
    box=st.none()
    | st.tuples(st.integers(0, 499), st.integers(0, 499), st.integers(500, 1000), st.integers(500, 1000)),
    confidence=st.floats(0, 1),
    think=st.text(max_size=40).filter(lambda t: "<" not in t),
)
def test_answer_round_trips(anomaly, defect, box, confidence, think):
    if defect is not None and defect.strip().lower() in ("", "none", "null", "good", "normal"):
        defect = None
    if defect is not None:
        defect = defect.strip()
    answer = Answer(
        anomaly=anomaly, type=defect, bbox=box, confidence=confidence, content=f"<think>{think}</think>"
    )
    assert parse_turn(answer.text) == answer


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["crop", "enhance", "prior", "measure", "x"]),
            st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_tool_calls_round_trip_byte_for_byte(calls):
    turn = ToolCalls(calls=tuple(ToolCall(n, a) for n, a in calls), content="<think>\nzoom\n</think>")
    parsed = parse_turn(turn.text)
    assert isinstance(parsed, ToolCalls)
    assert [(c.name, c.arguments) for c in parsed.calls] == calls
    assert parsed.text == turn.text


def test_canonical_arguments_are_kept_verbatim():
    raw = '{"mode": "clahe",   "bbox": [1, 2, 3, 4]}'
    parsed = parse_turn(f'<tool_call>\n{{"name": "enhance", "arguments": {raw}}}\n</tool_call>')
    assert parsed.calls[0].raw_arguments == raw
    assert raw in parsed.text


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("<|im_end|>", "empty"),
        ("The part looks fine.", "no_action"),
        ("<think>still thinking about the", "truncated"),
        ('<tool_call>\n{"name": "crop", "argum', "truncated"),
        ('<answer>{"anomaly": "no"', "truncated"),
        ("<tool_call>not json</tool_call>", "bad_json"),
        ("<tool_call>[1, 2]</tool_call>", "bad_json"),
        ('<tool_call>{"arguments": {}}</tool_call>', "bad_tool_call"),
        ('<tool_call>{"name": 3}</tool_call>', "bad_tool_call"),
        ('<tool_call>{"name": "crop", "arguments": [1]}</tool_call>', "bad_tool_call"),
        ('<answer>{"anomaly": "maybe", "confidence": 0.5}</answer>', "bad_answer"),
        ('<answer>{"anomaly": "yes", "bbox": [0, 0, 1001, 5], "confidence": 0.5}</answer>', "bad_answer"),
        ('<answer>{"anomaly": "yes", "bbox": [9, 0, 3, 5], "confidence": 0.5}</answer>', "bad_answer"),
        ('<answer>{"anomaly": "yes", "confidence": 1.5}</answer>', "bad_answer"),
        ('<answer>{"anomaly": "yes", "confidence": NaN}</answer>', "bad_json"),
        ('<answer>{"anomaly": "yes", "confidence": true}</answer>', "bad_answer"),
        ('<answer>{"anomaly": "yes"}</answer>', "bad_answer"),
        ('<answer>{"anomaly": "no", "type": 7, "confidence": 0.1}</answer>', "bad_answer"),
        ('<tool_call>{"name": "crop"}</tool_call><answer>{"anomaly": "no"}</answer>', "conflict"),
        ('<answer>{"anomaly": "no", "confidence": 0}</answer>' * 2, "multiple_answers"),
        ("<answer>" + "[" * 100_000 + "</answer>", "bad_json"),
    ],
)
def test_malformed_turns_get_their_error_code(text, code):
    result = parse_turn(text)
    assert isinstance(result, ParseError), result
    assert result.code == code


def test_non_string_output_is_an_error():
    assert parse_turn(None).code == "empty"
    assert parse_turn(b"<answer>").code == "empty"


def test_lenient_where_meaning_is_clear():
    answer = parse_turn(
        '<answer>```json\n{"anomaly": "YES", "type": "None", "bbox": null, "confidence": 1}\n```</answer>'
    )
    assert answer == Answer(anomaly=True, type=None, bbox=None, confidence=1.0)
    calls = parse_turn('<tool_call>{"name": "prior", "arguments": null}</tool_call><|im_end|>')
    assert calls.calls[0].arguments == {}


def test_several_calls_in_one_turn_keep_their_order():
    text = (
        '<tool_call>\n{"name": "crop", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": "prior", "arguments": {"name": "pcb"}}\n</tool_call>'
    )
    parsed = parse_turn(text)
    assert [c.name for c in parsed.calls] == ["crop", "prior"]
    assert parsed.text == text


@pytest.mark.parametrize("inner", ["<answer>", "</tool_call>x<answer>", "<answer>y</answer>", "<tool_call>"])
def test_a_tag_spelled_inside_a_block_is_content(inner):
    call = ToolCall("crop", {inner: None, "note": inner})
    turn = ToolCalls(calls=(call,), content="<think>\nzoom\n</think>")
    parsed = parse_turn(turn.text)
    if "</tool_call>" in inner:  # a closing tag in the JSON ends the block where it stands: the JSON breaks
        assert isinstance(parsed, ParseError)
    else:
        assert isinstance(parsed, ToolCalls) and parsed.text == turn.text
        assert parsed.calls[0].arguments == call.arguments
    answer = Answer(anomaly=True, type=inner, bbox=None, confidence=0.9, content="")
    if "</answer>" not in inner:
        assert parse_turn(answer.text) == answer
