import json
from pathlib import Path

import numpy as np

from station.agent import Agent
from station.backends.scripted import ANSWER_DEFECT, CROP_CALL, ScriptedBackend
from station.verdict import Verdict

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "verdict.schema.json"


def test_the_published_schema_is_the_one_in_the_code():
    published = json.loads(SCHEMA_FILE.read_text())
    assert published == Verdict.model_json_schema(), (
        "docs/verdict.schema.json is stale: regenerate it with "
        "python -c 'import json; from station.verdict import Verdict; "
        "print(json.dumps(Verdict.model_json_schema(), indent=2))' > docs/verdict.schema.json"
    )


def test_a_verdict_round_trips_through_json_without_its_evidence():
    agent = Agent(ScriptedBackend([CROP_CALL, ANSWER_DEFECT]))
    verdict = agent.inspect(np.zeros((64, 64, 3), np.uint8), "bottle", part_id="A7")
    agent.close()
    assert [name for name, _ in verdict.evidence] == ["frame", "crop"]
    data = json.loads(verdict.model_dump_json())
    assert "evidence" not in data and "_evidence" not in data
    again = Verdict.model_validate(data)
    assert again.model_dump() == verdict.model_dump() and again.evidence == []
