"""Reading a run directory's Parquet datasets back (for reruns, the CLI and analysts)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from styleaxis.embed.schema import read_metadata

from .video_io import content_hash

__all__ = ["read_dataset", "completed_videos"]


def read_dataset(run_dir: Path, name: str) -> pd.DataFrame:
    """``keyframes`` or ``videos`` of a run as one DataFrame (vector columns hold float32 arrays).

    Only finished ``*.parquet`` files are read; Beam's temporary files live in sub-folders.
    """
    files = sorted((Path(run_dir) / name).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{Path(run_dir) / name}: no Parquet files; run `styleaxis embed` first")
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def completed_videos(run_dir: Path, models: dict[str, str], hash_mode: str = "sampled") -> set[tuple[str, str]]:
    """(video_id, uri) pairs already processed by the same models whose file has not changed since.

    A video counts as done when a file written with identical model identity holds a row for it
    (any status: the same bytes would fail the same way) and the file's content hash still matches.
    """
    done: set[tuple[str, str]] = set()
    for f in sorted((Path(run_dir) / "videos").glob("*.parquet")):
        if read_metadata(pq.read_schema(f)).get("models") != models:
            continue
        table = pq.read_table(f, columns=["video_id", "uri", "content_hash", "status"]).to_pylist()
        for row in table:
            if Path(row["uri"]).is_file() and content_hash(row["uri"], hash_mode) == row["content_hash"]:
                done.add((row["video_id"], row["uri"]))
    return done
