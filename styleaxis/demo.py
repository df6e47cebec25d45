"""The demo: a sample catalogue made on the spot, embedded, indexed, queried and reported.

Contents are photos that ship in pip packages (scikit-image, scikit-learn); styles come from the
offline 26-style CIN network (Dumoulin et al. 2017). Each clip is a slow pan and zoom over one
stylised photo, encoded as H.264 MP4, so its keyframes differ while content and style stay fixed.
Clip files are named ``{content}__{style}.mp4``; those labels score the answers.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from styleaxis.api import IndexConfig, PipelineConfig, Searcher, build_indexes, embed_catalogue
from styleaxis.embed.recipe import RelativeConfig
from styleaxis.embed.registry import load_model
from styleaxis.media.video import read_keyframes
from styleaxis.media.write import write_video
from styleaxis.pipelines.dataset import read_dataset

__all__ = ["DemoConfig", "sample_photos", "make_catalogue", "clip_labels", "contact_sheet", "write_report",
           "run_demo"]

#: the cin26 styles the demo uses: four that look unlike each other.
DEMO_STYLES: tuple[int, ...] = (2, 8, 15, 21)


@dataclass(frozen=True)
class DemoConfig:
    """Size of the sample catalogue.

    Attributes:
        contents: how many photos (at most the number in :func:`sample_photos`).
        styles: cin26 style indices, one clip per (photo, style).
        seconds / fps / gop: clip length, frame rate and key-frame interval (frames).
        width / height: clip size in pixels (even numbers, for yuv420p).
    """

    contents: int = 6
    styles: tuple[int, ...] = DEMO_STYLES
    seconds: float = 3.0
    fps: int = 10
    gop: int = 10
    width: int = 256
    height: int = 176


def sample_photos() -> dict[str, np.ndarray]:
    """Colour photos that ship with scikit-image and scikit-learn, by name (HxWx3 uint8 RGB)."""
    import skimage.data as data
    from sklearn.datasets import load_sample_image

    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "cat": data.chelsea(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
        "pagoda": load_sample_image("china.jpg"),
        "flower": load_sample_image("flower.jpg"),
        "retina": data.retina(),
    }


def _pan_zoom_frames(image: np.ndarray, n: int, width: int, height: int) -> list[np.ndarray]:
    """``n`` frames of a slow zoom-in with a diagonal pan over ``image`` (already stylised)."""
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        zoom = 1.0 - 0.25 * t  # the window shrinks to 75 % of the largest that fits
        win_w = min(w, h * width / height) * zoom
        win_h = win_w * height / width
        left = (w - win_w) * (0.2 + 0.6 * t)
        top = (h - win_h) * (0.3 + 0.4 * t)
        box = (left, top, left + win_w, top + win_h)
        frames.append(np.asarray(pil.resize((width, height), Image.BICUBIC, box=box)))
    return frames


def make_catalogue(out_dir: Path, config: DemoConfig = DemoConfig(),
                   progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Write ``contents x styles`` clips into ``out_dir``; returns their paths (existing clips are kept)."""
    photos = list(sample_photos().items())[: config.contents]
    if len(photos) < config.contents:
        raise ValueError(f"the demo has {len(photos)} sample photos, asked for {config.contents}")
    out_dir.mkdir(parents=True, exist_ok=True)
    cin = load_model("cin26")
    n_frames = int(round(config.seconds * config.fps))
    paths = []
    for name, photo in photos:
        # stylise once, at a size a little above the clip's so the pan has room
        scale = 1.6 * config.height / min(photo.shape[:2])
        small = Image.fromarray(photo).resize(
            (round(photo.shape[1] * scale), round(photo.shape[0] * scale)), Image.BICUBIC)
        x = torch.from_numpy(np.array(small)).permute(2, 0, 1)[None].float() / 255.0
        for style in config.styles:
            path = out_dir / f"{name}__style{style:02d}.mp4"
            paths.append(path)
            if path.exists():
                continue
            weights = torch.zeros(26)
            weights[style] = 1.0
            with torch.inference_mode():
                styled = (cin(x, weights)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            write_video(path, _pan_zoom_frames(styled, n_frames, config.width, config.height),
                        fps=config.fps, gop=config.gop)
            progress(path.name)
    return paths


def clip_labels(video_id: str) -> tuple[str, str]:
    """(content, style) of a demo clip from its id ``{content}__{style}``."""
    content, _, style = video_id.partition("__")
    return content, style


def _thumbnail(uri: str, size: tuple[int, int]) -> Image.Image:
    first = read_keyframes(uri).keyframes[0].image
    return Image.fromarray(first).resize(size, Image.BICUBIC)


def contact_sheet(query: dict[str, Any], rows: dict[str, list[dict[str, Any]]], path: Path,
                  thumb: tuple[int, int] = (192, 132)) -> Path:
    """A PNG grid: one row per query mode, the query's first frame then its answers, each captioned."""
    cols = 1 + max(len(r) for r in rows.values())
    cap = 30
    sheet = Image.new("RGB", (cols * (thumb[0] + 8) + 8, len(rows) * (thumb[1] + cap + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (mode, answers) in enumerate(rows.items()):
        y = 8 + r * (thumb[1] + cap + 8)
        for c, item in enumerate([query] + answers):
            x = 8 + c * (thumb[0] + 8)
            sheet.paste(_thumbnail(item["uri"], thumb), (x, y))
            label = "QUERY " + mode if c == 0 else f"{c}. score {item['score']:.2f}"
            draw.text((x, y + thumb[1] + 2), item["video_id"][:30], fill="black")
            draw.text((x, y + thumb[1] + 15), label[:32], fill="darkred" if c == 0 else "black")
    tmp = path.with_suffix(".tmp.png")
    sheet.save(tmp)
    tmp.replace(path)
    return path


def write_report(out_dir: Path, query: dict[str, Any], answers: dict[str, list[dict[str, Any]]],
                 precision: dict[str, float], summary: dict[str, Any]) -> Path:
    """``report.html`` + ``contact_sheet.png`` + ``answers.json`` in ``out_dir``; returns the HTML path."""
    sheet = contact_sheet(query, answers, out_dir / "contact_sheet.png")
    (out_dir / "answers.json").write_text(json.dumps(
        {"query": query, "answers": answers, "precision": precision, "summary": summary}, indent=2))
    tables = []
    for mode, rows in answers.items():
        body = "".join(
            f"<tr><td>{i + 1}</td><td>{html.escape(a['video_id'])}</td><td>{a['style_score']:.3f}</td>"
            f"<td>{a['content_score']:.3f}</td><td>{html.escape(a['reason'])}</td></tr>"
            for i, a in enumerate(rows))
        tables.append(f"<h2>{html.escape(mode)}</h2><table><tr><th>#</th><th>clip</th><th>style</th>"
                      f"<th>content</th><th>reason</th></tr>{body}</table>")
    prec = "".join(f"<li>{html.escape(k)}: {v:.3f}</li>" for k, v in precision.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>styleaxis demo</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:left}}</style></head>
<body><h1>styleaxis demo: answers for {html.escape(query['video_id'])}</h1>
<p>{summary['clips']} clips ({summary['contents']} contents x {summary['styles']} styles),
{summary['keyframes']} keyframes embedded in {summary['embed_seconds']:.1f} s
({summary['keyframes_per_s']:.2f} keyframes/s).</p>
<h2>Precision over every clip as a query (top-5)</h2><ul>{prec}</ul>
<img src="{sheet.name}" alt="contact sheet">{''.join(tables)}</body></html>"""
    path = out_dir / "report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path


def _precision(searcher: Searcher, ids: list[str], mode: str, k: int, same: Callable[[str, str], bool]) -> float:
    answers = searcher.search_batch(ids, mode=mode, k=k)
    return float(np.mean([np.mean([same(q, r.video_id) for r in rs]) for q, rs in zip(ids, answers)]))


def run_demo(out_dir: str | Path, *, query_clip: str = "astronaut__style08", k: int = 5, progress: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole path on a sample catalogue: clips -> Parquet -> indexes -> answers -> report."""
    out = Path(out_dir)
    demo = DemoConfig()
    echo(f"making the sample catalogue ({demo.contents} photos x {len(demo.styles)} styles) in {out / 'clips'}")
    clips = make_catalogue(out / "clips", demo, progress=(lambda name: echo(f"  wrote {name}")) if progress else (lambda _: None))
    echo("embedding (Apache Beam, local runner)")
    start = time.perf_counter()
    summary = embed_catalogue([str(out / "clips")], out / "run",
                              PipelineConfig(out_dir=out / "run", progress=progress))
    embed_seconds = time.perf_counter() - start
    # the relative steps compare each clip with its k nearest on the other axis; k is at most the number of
    # renderings a photo has here (the default 10 suits catalogues with ~10 per content: bench/RESULTS.md)
    relative = RelativeConfig(k=len(demo.styles))
    manifest = build_indexes(out / "run", out / "run" / "index", IndexConfig(relative=relative))
    echo(f"indexed {manifest.count} clips on two axes (relative steps over each clip's {relative.k} nearest: "
         f"every photo is shown in {len(demo.styles)} styles)")
    searcher = Searcher.load(out / "run" / "index")
    ids = list(searcher.video_ids)
    if query_clip not in ids:
        raise KeyError(f"query clip {query_clip!r} is not in the demo catalogue; e.g. {ids[:3]}")
    answers = {}
    for mode in ("same-style-different-content", "same-content-different-style"):
        answers[mode] = [r.__dict__ for r in searcher.search(query_clip, mode=mode, k=k)]
        echo(f"\n{mode} for {query_clip}:")
        for r in answers[mode]:
            echo(f"  {r['rank']}. {r['video_id']:24s} style {r['style_score']:.3f}  content {r['content_score']:.3f}")
    style_of = lambda v: clip_labels(v)[1]  # noqa: E731
    content_of = lambda v: clip_labels(v)[0]  # noqa: E731
    precision = {
        f"same-style-different-content: share of top-{k} with the query's style":
            _precision(searcher, ids, "same-style-different-content", k, lambda q, r: style_of(q) == style_of(r)),
        f"same-style-different-content: share of top-{k} with another content":
            _precision(searcher, ids, "same-style-different-content", k, lambda q, r: content_of(q) != content_of(r)),
        "same-content-different-style: share of top-3 with the query's content":
            _precision(searcher, ids, "same-content-different-style", 3, lambda q, r: content_of(q) == content_of(r)),
    }
    echo("\nprecision over every clip as a query:")
    for name, value in precision.items():
        echo(f"  {name}: {value:.3f}")
    videos = read_dataset(out / "run", "videos")
    n_kf = int(videos.n_keyframes.sum())
    stats = {"clips": len(clips), "contents": demo.contents, "styles": len(demo.styles), "keyframes": n_kf,
             "embed_seconds": embed_seconds, "keyframes_per_s": n_kf / embed_seconds if summary["embedded"] else 0.0}
    query = {"video_id": query_clip, "uri": videos.set_index("video_id").uri[query_clip]}
    uris = videos.set_index("video_id").uri.to_dict()
    for rows in answers.values():
        for row in rows:
            row["uri"] = uris[row["video_id"]]
    report = write_report(out, query, answers, precision, stats)
    return {"report": report, "precision": precision, "answers": answers, "stats": stats}
