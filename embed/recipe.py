"""The axis recipe: which steps build each similarity axis, in which order, from which inputs.

Every place that makes axis vectors runs this one recipe: the index build, ``index build --add``,
vector and file queries, and ``eval retrieval``. They differ only in where the catalogue lives
(:class:`Catalogue`): FAISS indexes written to disk, a loaded index, or exact numpy search.

Words used throughout: *raw* rows are descriptor vectors as the embed job wrote them; a *base* axis
is an axis before its catalogue step (``content_base``, ``style_base``; internal to the index).

The chain (styleaxis.embed.relative has the formulas and their papers):

1. ``content_base`` <- the content descriptors, each centred and L2-normalised (:class:`Combine`).
2. ``style_base`` <- the style descriptors; a descriptor of :data:`RELATIVE_DESCRIPTORS` is first
   made content-relative against its k nearest videos on ``content_base`` (:class:`Residual`).
3. ``style`` <- ``style_base`` expanded by its m nearest style rows outside its content neighbours
   (:class:`Expand`; whenever there is a content axis to take those neighbours from).
4. ``content`` <- ``content_base`` minus alpha x the median of its k nearest videos on ``style``
   (:class:`StyleRelative`), then centred and L2-normalised.

The default style axis, ``style_head``, is learned per video and takes no step 2 (the residual cost it
0.06-0.22 mAP on every catalogue design); step 3 added 0.00-0.01 mAP and 0.00-0.02 P@R to it
(``style-head-v3``) and lowered neither on any design, whether each content appears in every look, in a
few or once; step 4 helped the content axis on every design (bench/style_axis.py, bench/RESULTS.md).

A step is left out where its config turns it off or it has nothing to work on (no content-relative
style descriptor); its axis is then built directly under the public name.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from .relative import content_relative, expand_rows, nearest_rows, style_relative_content

__all__ = [
    "RELATIVE_DESCRIPTORS", "DEFAULT_AXES", "CONTENT_BASE", "STYLE_BASE", "BASE_AXES", "RelativeConfig", "Residual", "Combine",
    "Expand", "StyleRelative", "Step", "AxisRecipe", "Catalogue", "TransformKind", "encode", "combine_blocks",
    "centre_unit", "ExactCatalogue", "exact_axes",
]

#: descriptors that are made content-relative wherever an axis is built from them
RELATIVE_DESCRIPTORS: frozenset[str] = frozenset({"style_eff"})
#: the axes the index builds by default (style: the learned style_head, which needs no catalogue step;
#: content: content and the trained content_head beside it, made style-relative against the style axis)
DEFAULT_AXES: dict[str, tuple[str, ...]] = {"style": ("style_head",), "content": ("content", "content_head")}
#: the content axis before its style-relative step
CONTENT_BASE = "content_base"
#: the style axis before its expansion
STYLE_BASE = "style_base"
#: base axis -> the public axis it precedes (reserved names: no user axis may take them)
BASE_AXES: dict[str, str] = {CONTENT_BASE: "content", STYLE_BASE: "style"}

TransformKind = Literal["descriptor", "axis"]


@dataclass(frozen=True)
class RelativeConfig:
    """The catalogue steps' knobs.

    Attributes:
        k: neighbours the content-relative reference is taken over (the item itself counts when indexed);
            also the exclusions of the expansion and the style neighbours of the content step. Keep it
            at most the number of videos that typically show one content (docs/search.md).
        eps: the MAD floor, relative to the catalogue's median MAD.
        expand: style neighbours (outside the content neighbours) added to each style row (0: off).
        content_alpha: weight of the style-relative step on the content axis (0: off).
    """

    k: int = 10
    eps: float = 0.1
    expand: int = 2
    content_alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"RelativeConfig.k must be >= 1, got {self.k}")
        if self.eps <= 0:
            raise ValueError(f"RelativeConfig.eps must be > 0, got {self.eps}")
        if self.expand < 0:
            raise ValueError(f"RelativeConfig.expand must be >= 0, got {self.expand}")
        if not 0 <= self.content_alpha <= 1:
            raise ValueError(f"RelativeConfig.content_alpha must be in [0, 1], got {self.content_alpha}")


@dataclass(frozen=True)
class Residual:
    """One descriptor made content-relative (:func:`~styleaxis.embed.relative.content_relative`).

    axis: the axis whose ``k`` nearest videos are the reference. eps: the MAD floor's scale. floor:
    the fitted MAD floor (None until fitted). mean: the raw rows' mean, which the duplicate filter
    centres raw vectors on (None until fitted).
    """

    axis: str
    k: int
    eps: float
    floor: tuple[float, ...] | None = None
    mean: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Combine:
    """An axis from descriptors: each (residual, where listed) transformed, then concatenated."""

    axis: str
    descriptors: tuple[str, ...]
    residuals: Mapping[str, Residual] = field(default_factory=dict)


@dataclass(frozen=True)
class Expand:
    """``axis`` = each ``base_axis`` row plus its ``m`` nearest base rows that are not among its ``k``
    nearest videos on ``exclude_axis``, L2-normalised (:func:`~styleaxis.embed.relative.expand_rows`)."""

    axis: str
    base_axis: str
    exclude_axis: str
    k: int
    m: int


@dataclass(frozen=True)
class StyleRelative:
    """``axis`` = each ``base_axis`` row minus ``alpha`` x the median base row of its ``k`` nearest videos
    on ``neighbour_axis``, then centred and L2-normalised
    (:func:`~styleaxis.embed.relative.style_relative_content`)."""

    axis: str
    base_axis: str
    neighbour_axis: str
    k: int
    alpha: float


Step = Combine | Expand | StyleRelative
_STEP_TYPES: dict[str, type] = {"combine": Combine, "expand": Expand, "style_relative": StyleRelative}


@dataclass(frozen=True)
class AxisRecipe:
    """The ordered steps that build every axis; ``public`` lists the axes users query."""

    steps: tuple[Step, ...]
    public: tuple[str, ...]

    @classmethod
    def plan(cls, axes: Mapping[str, Sequence[str]], config: RelativeConfig | None = None,
             count: int | None = None) -> AxisRecipe:
        """The recipe for ``axes`` (axis -> descriptors), with ``config``'s steps where they apply.

        ``count`` (the catalogue size, when known) caps k. Raises
        ValueError for a content-relative descriptor without a content axis to measure it against, or
        one on the content axis itself.
        """
        config = config or RelativeConfig()
        axes = {axis: tuple(names) for axis, names in axes.items() if names}
        reserved = sorted(set(BASE_AXES) & set(axes))
        if reserved:
            raise ValueError(f"axes {reserved} are reserved for the index's own use")
        relative = sorted(RELATIVE_DESCRIPTORS & {n for names in axes.values() for n in names})
        if relative and "content" not in axes:
            raise ValueError(f"descriptors {relative} are content-relative and need a 'content' axis")
        if RELATIVE_DESCRIPTORS & set(axes.get("content", ())):
            raise ValueError(f"the 'content' axis cannot hold the content-relative {relative}")
        k = min(config.k, count) if count else config.k
        both = "style" in axes and "content" in axes
        alpha = config.content_alpha if both else 0.0
        m = config.expand if both else 0
        reference = CONTENT_BASE if alpha else "content"
        steps: list[Step] = []
        if "content" in axes:
            steps.append(Combine(reference, axes["content"]))
        for axis, names in axes.items():
            if axis == "content":
                continue
            residuals = {n: Residual(reference, k, config.eps) for n in names if n in RELATIVE_DESCRIPTORS}
            if m and axis == "style":
                steps += [Combine(STYLE_BASE, names, residuals), Expand("style", STYLE_BASE, reference, k, m)]
            else:
                steps.append(Combine(axis, names, residuals))
        if alpha:
            steps.append(StyleRelative("content", CONTENT_BASE, "style", k, alpha))
        return cls(tuple(steps), tuple(axes))

    @property
    def axes(self) -> tuple[str, ...]:
        """Every axis the recipe builds (base axes included), in build order."""
        return tuple(step.axis for step in self.steps)

    def step(self, axis: str) -> Step:
        """The step that builds ``axis``."""
        for step in self.steps:
            if step.axis == axis:
                return step
        raise KeyError(f"no step builds axis {axis!r}; the recipe builds {', '.join(self.axes)}")

    def base(self, axis: str) -> str:
        """The axis before ``axis``'s catalogue steps (``axis`` itself when it has none)."""
        step = self.step(axis)
        return step.axis if isinstance(step, Combine) else self.base(step.base_axis)

    def descriptors(self, axis: str) -> tuple[str, ...]:
        """The descriptors ``axis`` is made of."""
        return self.step(self.base(axis)).descriptors

    def residual(self, descriptor: str) -> Residual | None:
        """The content-relative step of ``descriptor``, or None when it has none."""
        return next((step.residuals[descriptor] for step in self.steps
                     if isinstance(step, Combine) and descriptor in step.residuals), None)

    def describe(self) -> list[str]:
        """One line per catalogue step, for people (``index build`` prints them)."""
        lines = []
        for step in self.steps:
            if isinstance(step, Combine):
                lines += [f"{name}: content-relative, against each video's {spec.k} nearest videos on the content axis"
                          for name, spec in step.residuals.items()]
            elif isinstance(step, Expand):
                lines.append(f"{step.axis} axis: each video plus its {step.m} nearest videos on the style axis outside "
                             f"its {step.k} content neighbours")
            else:
                lines.append(f"{step.axis} axis: style-relative, minus {step.alpha:g} x the median content of each "
                             f"video's {step.k} nearest videos on the style axis")
        return lines

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (manifest.json); :meth:`from_json` reads it back."""
        kinds = {cls: name for name, cls in _STEP_TYPES.items()}
        return {"public": list(self.public),
                "steps": [{"kind": kinds[type(step)], **asdict(step)} for step in self.steps]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AxisRecipe:
        """The recipe :meth:`to_json` wrote; raises ValueError naming an unknown step kind."""
        steps: list[Step] = []
        for raw in data["steps"]:
            fields = dict(raw)
            kind = fields.pop("kind")
            if kind not in _STEP_TYPES:
                raise ValueError(f"unknown axis step kind {kind!r}; known: {', '.join(_STEP_TYPES)}")
            if kind == "combine":
                fields["descriptors"] = tuple(fields["descriptors"])
                fields["residuals"] = {name: Residual(**{**spec, **{key: tuple(spec[key]) for key in ("floor", "mean")
                                                                   if spec.get(key) is not None}})
                                       for name, spec in fields["residuals"].items()}
            steps.append(_STEP_TYPES[kind](**fields))
        return cls(tuple(steps), tuple(data["public"]))


class Catalogue(Protocol):
    """Where the recipe's catalogue lives; "the rows" are the rows being encoded.

    For a build the rows are the catalogue; for ``--add`` they are the added videos (the catalogue
    grows by them as each axis is put); for a query they are the query vectors (never put into it).
    """

    def nearest(self, axis: str, k: int) -> np.ndarray:
        """(n, k) catalogue rows nearest to each of the rows on ``axis`` (already put)."""

    def matrix(self, axis: str) -> np.ndarray:
        """The catalogue's rows on ``axis``."""

    def reference(self, descriptor: str, raw: np.ndarray) -> np.ndarray:
        """The catalogue's raw rows of ``descriptor`` (including ``raw`` where the rows join it)."""

    def transform(self, kind: TransformKind, name: str, rows: np.ndarray) -> np.ndarray:
        """Centred, L2-normalised rows of a descriptor or of an axis after its step (fitted at build)."""

    def put(self, axis: str, rows: np.ndarray) -> None:
        """The rows' vectors on ``axis`` are final (later steps search and read that axis)."""


def encode(recipe: AxisRecipe, raw: dict[str, np.ndarray],
           catalogue: Catalogue) -> tuple[dict[str, np.ndarray], AxisRecipe]:
    """Run every step of ``recipe`` on ``raw`` rows (descriptor -> (n, D); entries are consumed, so a
    build holds one raw matrix at a time). Returns each axis's rows (base axes included) and the recipe
    with every residual fitted (unchanged where it already was)."""
    out: dict[str, np.ndarray] = {}
    blocks: dict[str, np.ndarray] = {}
    fitted: dict[str, Residual] = {}
    steps: list[Step] = []
    for step in recipe.steps:
        if isinstance(step, Combine):
            for name in step.descriptors:
                if name not in blocks:
                    rows = raw.pop(name)
                    spec = step.residuals.get(name)
                    if spec is not None:
                        rows, fitted[name] = _residual(name, rows, spec, catalogue)
                    blocks[name] = catalogue.transform("descriptor", name, rows)
            matrix = combine_blocks([blocks[name] for name in step.descriptors])
            step = replace(step, residuals={name: fitted[name] for name in step.residuals})
        elif isinstance(step, Expand):
            matrix = expand_rows(out[step.base_axis], catalogue.matrix(step.base_axis),
                                 catalogue.nearest(step.base_axis, step.k + step.m),
                                 catalogue.nearest(step.exclude_axis, step.k), step.m)
        else:
            moved = style_relative_content(out[step.base_axis], catalogue.matrix(step.base_axis),
                                           catalogue.nearest(step.neighbour_axis, step.k), step.alpha)
            matrix = catalogue.transform("axis", step.axis, moved)
        out[step.axis] = matrix
        catalogue.put(step.axis, matrix)
        steps.append(step)
    return out, replace(recipe, steps=tuple(steps))


def _residual(name: str, raw: np.ndarray, spec: Residual, catalogue: Catalogue) -> tuple[np.ndarray, Residual]:
    """Content-relative rows of one descriptor; fits the floor and mean where ``spec`` has none yet."""
    reference = catalogue.reference(name, raw)
    floor = None if spec.floor is None else np.asarray(spec.floor, dtype=np.float32)
    rows, floor = content_relative(raw, reference, catalogue.nearest(spec.axis, spec.k), spec.eps, floor)
    if spec.floor is None:
        mean = np.asarray(raw, dtype=np.float64).mean(axis=0)
        spec = replace(spec, floor=tuple(float(v) for v in floor), mean=tuple(float(v) for v in mean))
    return rows, spec


def combine_blocks(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate unit-norm descriptor blocks into one axis vector, each weighted 1/sqrt(n).

    The inner product of two axis vectors is then the mean cosine over the descriptors, and axis
    vectors stay unit-norm, so one inner-product index serves the whole axis.
    """
    return (np.concatenate(blocks, axis=-1) / np.sqrt(len(blocks))).astype(np.float32, copy=False)


def centre_unit(rows: np.ndarray) -> np.ndarray:
    """Rows centred on their own mean and L2-normalised (the index's search transform, fitted on the
    rows, without whitening)."""
    x = np.asarray(rows, dtype=np.float64)
    x = x - x.mean(axis=0)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class ExactCatalogue:
    """A :class:`Catalogue` that is the rows themselves: exact neighbours (:func:`nearest_rows`, each
    (axis, k) searched once) and transforms fitted on the rows. Evaluation and benchmarks use it."""

    def __init__(self) -> None:
        self._rows: dict[str, np.ndarray] = {}
        self._found: dict[tuple[str, int], np.ndarray] = {}

    def nearest(self, axis: str, k: int) -> np.ndarray:
        if (axis, k) not in self._found:
            self._found[axis, k] = nearest_rows(self._rows[axis], self._rows[axis], k)
        return self._found[axis, k]

    def matrix(self, axis: str) -> np.ndarray:
        return self._rows[axis]

    def reference(self, descriptor: str, raw: np.ndarray) -> np.ndarray:
        return raw

    def transform(self, kind: TransformKind, name: str, rows: np.ndarray) -> np.ndarray:
        return centre_unit(rows)

    def put(self, axis: str, rows: np.ndarray) -> None:
        self._rows[axis] = rows


def exact_axes(vectors: Mapping[str, np.ndarray], axes: Mapping[str, Sequence[str]],
               config: RelativeConfig | None = None) -> dict[str, np.ndarray]:
    """The public axes of ``axes`` built from ``vectors`` (descriptor -> (N, D)) exactly as the index
    builds them, with exact neighbours: what ``eval retrieval`` scores."""
    recipe = AxisRecipe.plan(axes, config, count=len(next(iter(vectors.values()))))
    needed = {name for axis in recipe.public for name in recipe.descriptors(axis)}
    out, _ = encode(recipe, {name: vectors[name] for name in needed}, ExactCatalogue())
    return {axis: out[axis] for axis in recipe.public}
