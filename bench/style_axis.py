"""The style axis on catalogues shaped like real ones: factorial, sparse and singleton designs.

Builds the designed catalogues of ``styleaxis.eval.designs`` (role ``eval``: looks and contents never
used in training; sparse is a subset of factorial's images), embeds every item as the nightly job does
(``embed_catalog``: the job's decode size and resize), and scores axis variants on each design:

style: raw ``style_eff``; today's index default before issue 17 (``style_eff`` content-relative + the
expansion); ``style_cin``; the learned ``style_head`` (centred as the index centres it, or as it
is); ``style_head`` with the content-relative step or the expansion (catalogue steps).
content: ``content`` alone; with the style-relative step on the old style axis (the old default) and on
the ``style_head`` axis; ``content`` + the trained ``content_head`` beside it, raw and as the index builds it.

Prints, per design: mAP, P@R, P@k (k = the largest the design allows, at most 10) and leakage of each
variant, then P@R per look for the old and new default style axes, and the cost of each descriptor.

``singleton3`` is the singleton design with three looks of each family, so that a look must be told from
others of its family (two grades, two JPEG qualities), as in a real catalogue.

    python bench/style_axis.py [--cache DIR] [--head FILE] [--designs factorial,sparse,singleton,singleton3]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.recipe import DEFAULT_AXES, RelativeConfig, centre_unit, combine_blocks, exact_axes
from styleaxis.embed.registry import get_model, load_model
from styleaxis.embed.relative import (
    content_relative, expand_rows, nearest_rows, style_relative_content,
)
from styleaxis.embed.style_head import STYLE_HEAD_MODEL, STYLE_HEAD_TAPS, read_style_head, style_features
from styleaxis.eval.catalog import embed_catalog, read_catalog
from styleaxis.eval.designs import DesignConfig, build_design_catalog, design_items
from styleaxis.eval.retrieval import largest_k, per_query_metrics, summarize

DESCRIPTORS = ("style_eff", "style_cin", "content", "content_head")


#: the catalogues the bench builds (sparse is a subset of factorial's rows). ``singleton3`` draws 3 looks of
#: each family (11 items each; the eval role's photos allow 392 contents): a real catalogue holds many
#: grades and filters, and with one look per family a head only has to tell the families apart
BUILT = {"factorial": DesignConfig(design="factorial"), "singleton": DesignConfig(design="singleton"),
         "singleton3": DesignConfig(design="singleton", looks_per_family=3, per_look=11)}


def _catalogues(cache: Path, designs: Sequence[str] = ("factorial", "sparse", "singleton")
                ) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """design -> catalogue table of each of ``designs`` (built into ``cache`` once), and the factorial rows
    the sparse design keeps (the same images; factorial is always read)."""
    out = {}
    for design, config in BUILT.items():
        if design != "factorial" and design not in designs:
            continue
        csv = cache / design / "catalog.csv"
        if not csv.is_file():
            build_design_catalog(cache / design, config)
        out[design] = read_catalog(csv)
    chosen = {(c, look.name) for c, look in design_items(DesignConfig(design="sparse"))}
    factorial = out["factorial"]
    keep = [(c, s) in chosen for c, s in zip(factorial["content"], factorial["style"])]
    out["sparse"] = factorial[keep].reset_index(drop=True)
    return out, np.flatnonzero(keep)


def _features(table: pd.DataFrame, encoder: torch.nn.Module) -> np.ndarray:
    """Style features of each item's frame, resized as the Embedder resizes (one frame per image)."""
    from styleaxis.embed.images import resize_short_side
    from styleaxis.media.video import DEFAULT_MAX_SIDE, KeyframePolicy, read_frames

    rows = []
    with torch.inference_mode():
        for path in table["path"]:
            frame = read_frames(path, KeyframePolicy(max_keyframes=1), DEFAULT_MAX_SIDE)[0]
            image = resize_short_side(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255,
                                      EmbedConfig().short_side)
            rows.append(style_features(encoder(image[None], STYLE_HEAD_TAPS))[0].numpy())
    return np.stack(rows)


def _vectors(cache: Path, design: str, table: pd.DataFrame, head: torch.nn.Module,
             encoder: torch.nn.Module) -> dict[str, np.ndarray]:
    store = cache / f"{design}.npz"
    data = dict(np.load(store)) if store.is_file() else {}
    missing = tuple(d for d in DESCRIPTORS if d not in data)  # a cache from an older bench gains only these
    if missing or "features" not in data:
        if missing:
            data.update(embed_catalog(table, EmbedConfig(descriptors=missing), progress=False))
        if "features" not in data:
            data["features"] = _features(table, encoder)
        np.savez(store, **data)
    with torch.no_grad():
        data["style_head"] = head(torch.from_numpy(data.pop("features")).float()).numpy()
    return data


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def variants(v: dict[str, np.ndarray], k: int = 10, m: int = 2, alpha: float = 0.5) -> dict[str, tuple[str, np.ndarray]]:
    """variant -> (axis, matrix)."""
    old = exact_axes(v, {"style": ("style_eff",), "content": ("content",)}, RelativeConfig())
    new = exact_axes(v, DEFAULT_AXES)  # what the index builds
    content = centre_unit(v["content"])
    head = centre_unit(v["style_head"])
    content_nb = nearest_rows(content, content, min(k, len(content)))
    rel = centre_unit(content_relative(v["style_head"], v["style_head"], content_nb, 0.1)[0])
    expanded = expand_rows(head, head, nearest_rows(head, head, k + m), content_nb, m)
    moved = centre_unit(style_relative_content(content, content, nearest_rows(head, head, k), alpha))
    pair = combine_blocks([content, centre_unit(v["content_head"])])
    return {
        "style_eff raw": ("style", centre_unit(v["style_eff"])),
        "before: style_eff rel k10 + exp2": ("style", old["style"]),
        "style_cin raw": ("style", centre_unit(v["style_cin"])),
        "index default (style_head + exp2)": ("style", new["style"]),
        "style_head": ("style", head),
        "style_head, not centred": ("style", _unit(v["style_head"])),
        "style_head rel k10": ("style", rel),
        "style_head + exp2, content neighbours on content alone": ("style", expanded),
        "content alone": ("content", content),
        "before: content style-relative (style_eff axis)": ("content", old["content"]),
        "content style-relative on style_head (the default before content_head)": ("content", moved),
        "content + content_head": ("content", pair),
        "index default (content + content_head, style-relative)": ("content", new["content"]),
    }


def _row(design: str, axis: str, variant: str, k: int, s: dict[str, float]) -> dict[str, object]:
    return {"design": design, "axis": axis, "variant": variant, "k": k, "mAP": s["map"], "P@R": s["precision_r"],
            "P@k": s["precision"], "leakage": s["leakage"], "leakage chance": s["leakage_chance"]}


def _markdown(frame: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    """A pipe table (RESULTS.md's format) of ``frame``, floats to ``digits`` decimals ("-": no value, e.g. a
    look that a design does not hold)."""
    if index:
        frame = frame.reset_index()
    cells = [[("-" if np.isnan(v) else f"{v:.{digits}f}") if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "styleaxis-designs")
    parser.add_argument("--head", type=Path, default=None, help="a style head file (default: the shipped one)")
    parser.add_argument("--designs", default="factorial,sparse,singleton,singleton3")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared machine honest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    head = read_style_head(args.head) if args.head else load_model(STYLE_HEAD_MODEL)
    encoder = load_model("effnet-lite0")
    designs = args.designs.split(",")
    unknown = [d for d in designs if d not in (*BUILT, "sparse")]
    if unknown:
        parser.error(f"--designs: unknown {unknown}; known: {', '.join((*BUILT, 'sparse'))}")
    tables, sparse_rows = _catalogues(args.cache, designs)
    print(f"# bench/style_axis.py, {date.today()}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; head {args.head or get_model(STYLE_HEAD_MODEL).relpath}\n")
    per_look: dict[str, pd.DataFrame] = {}
    content_per_look: dict[str, pd.DataFrame] = {}
    rows = []
    full = {d: _vectors(args.cache, d, tables[d], head, encoder) for d in BUILT
            if d in designs or (d == "factorial" and "sparse" in designs)}
    for design in designs:
        table = tables[design]
        vectors = ({name: m[sparse_rows] for name, m in full["factorial"].items()} if design == "sparse"
                   else full[design])
        k = largest_k(table["content"], table["style"])
        families = table["style"].str.split("-").str[0]  # a look's name is FAMILY-DIGEST
        for name, (axis, matrix) in variants(vectors).items():
            pq = per_query_metrics(matrix, table["content"], table["style"], axis, k=k)
            rows.append(_row(design, axis, name, k, summarize(pq)))
            if name.startswith("index default") and axis == "style" and families.nunique() < table["style"].nunique():
                # several looks of one family: how much of the miss is a near-duplicate look of the same family
                by_family = per_query_metrics(matrix, table["content"], families, axis, k=k)
                rows.append(_row(design, axis, "index default, scored by look family", k, summarize(by_family)))
            if name in ("before: style_eff rel k10 + exp2", "index default (style_head + exp2)"):
                per_look[f"{design}: {name.split(':')[0].split(' (')[0]}"] = pq.groupby("style")["precision_r"].mean()
            if axis == "content" and name.startswith(("index default", "content style-relative on")):
                column = "default" if name.startswith("index") else "before"
                metric = "leakage" if design.startswith("singleton") else "precision_r"
                content_per_look[f"{design}: {column}"] = pq.groupby("style")[metric].mean()
    frame = pd.DataFrame(rows)
    for axis in ("style", "content"):
        print(f"## {axis} axis\n")
        print(_markdown(frame[frame["axis"] == axis].drop(columns="axis")), "\n")
    print("## style P@R per look (old and new default)\n")
    print(_markdown(pd.DataFrame(per_look), index=True), "\n")
    print("## content SCDS P@R per look (singleton: leakage; before: content style-relative on style_head)\n")
    print(_markdown(pd.DataFrame(content_per_look), index=True), "\n")
    # cost: the encoder prefix each descriptor needs, one frame of 256 x 341, batch 8, this many threads
    x = torch.rand(8, 3, 256, 341)
    costs = []
    for descriptors in (("style_eff", "content"), ("style_eff", "content", "style_head"),
                        ("style_eff", "content", "style_head", "content_head"), ("style_cin",)):
        embedder = Embedder(EmbedConfig(descriptors=descriptors, device="cpu")).load()
        embedder.embed_batch(x)
        start = time.process_time()
        for _ in range(3):
            embedder.embed_batch(x)
        costs.append({"descriptors": "+".join(descriptors), "cpu ms / frame": (time.process_time() - start) / 24 * 1e3})
    print("## cost\n")
    print(_markdown(pd.DataFrame(costs), digits=1))


if __name__ == "__main__":
    main()
