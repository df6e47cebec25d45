"""The Parquet record schema every part of styleaxis reads: the contract between the embedding job and its readers.

``keyframes/``: one row per embedded keyframe. ``videos/``: one row per input, whatever happened
to it (status ``ok``, ``partial`` or ``failed`` with an error), carrying the video-level vectors
(mean of the L2-normalised keyframe vectors) when there are any. Each vector column is a
float32 list: fixed-size in ``keyframes/``; variable-size in ``videos/``, because pyarrow 25 writes
a null fixed-size list that it cannot read back (measured), and a failed video has no vector there.
Readers check every list's length against the dimension in the metadata. The file metadata key ``styleaxis`` holds JSON: model ids and sha256s,
descriptor dims, resize policy, code version and run id.
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

__all__ = [
    "METADATA_KEY",
    "STATUSES",
    "keyframes_schema",
    "videos_schema",
    "read_metadata",
]

METADATA_KEY = b"styleaxis"
STATUSES = ("ok", "partial", "failed")

_KEYFRAME_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("pts_s", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    # null for a usable keyframe, else why it was left out of the video's vector (black, constant, nonfinite:...)
    pa.field("flag", pa.string()),
]
_VIDEO_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("content_hash", pa.string()),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("n_keyframes", pa.int32()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    # mean cosine of the keyframes' style vectors to the video's mean style direction (1.0 = constant style)
    pa.field("style_stability", pa.float64()),
]


def _vector_fields(metadata: dict[str, Any], fixed: bool) -> list[pa.Field]:
    return [
        pa.field(name, pa.list_(pa.float32(), int(spec["dim"]) if fixed else -1))
        for name, spec in metadata["descriptors"].items()
    ]


def _with_metadata(fields: list[pa.Field], metadata: dict[str, Any]) -> pa.Schema:
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})


def keyframes_schema(metadata: dict[str, Any]) -> pa.Schema:
    """Schema of ``keyframes/`` for the descriptors named in ``metadata["descriptors"]``."""
    return _with_metadata(_KEYFRAME_FIELDS + _vector_fields(metadata, fixed=True), metadata)


def videos_schema(metadata: dict[str, Any]) -> pa.Schema:
    """Schema of ``videos/``; vector columns are null for videos that yielded no keyframe."""
    return _with_metadata(_VIDEO_FIELDS + _vector_fields(metadata, fixed=False), metadata)


def read_metadata(schema: pa.Schema, source: object = "Parquet file") -> dict[str, Any]:
    """The styleaxis metadata of a Parquet file's schema, with its ``models`` and ``descriptors``
    objects; a ValueError naming ``source`` (the file) when it is absent or malformed."""
    key = METADATA_KEY.decode()
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{source}: Parquet schema metadata has no {key!r} key: not written by styleaxis embed")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: {key!r} metadata is not valid JSON ({exc})") from exc
    for field in ("models", "descriptors"):
        if not isinstance(meta.get(field), dict):
            raise ValueError(f"{source}: {key!r} metadata needs a {field!r} object")
    return meta
