"""The shipped content head behind the `content_head` descriptor: its identity, its pass and what it sees."""
from __future__ import annotations

import numpy as np
import torch

from styleaxis.embed.content_head import CONTENT_HEAD_MODEL, HEAD_TAP, ContentHead
from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import get_model, load_model, resolve_weights
from styleaxis.eval.designs import content_image
from styleaxis.eval.looks import apply_look, sample_looks


def test_shipped_head_is_registered_with_its_hash() -> None:
    record = get_model(CONTENT_HEAD_MODEL)
    path, digest = resolve_weights(CONTENT_HEAD_MODEL)
    assert digest == record.sha256 and path.is_file() and path.with_suffix(".json").is_file()
    assert isinstance(load_model(CONTENT_HEAD_MODEL), ContentHead)


def _frames() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """4 evaluation contents x 4 evaluation looks that hide content most (never seen in training), 96 px."""
    looks = [look for look in sample_looks("eval", 1) if look.family in ("halftone", "mosaic", "sketch", "cin26")]
    frames, look_of, content_of = [], [], []
    for content in ("coffee", "chelsea", "astronaut", "rocket"):
        image = np.asarray(content_image(content))
        image = np.ascontiguousarray(image[:: max(1, image.shape[0] // 96), :: max(1, image.shape[0] // 96)])
        for look in looks:
            frames.append(apply_look(look, image))
            look_of.append(look.name)
            content_of.append(content)
    return frames, np.array(look_of), np.array(content_of)


def _margin(z: np.ndarray, looks: np.ndarray, contents: np.ndarray) -> float:
    """Mean cosine of same-content-other-look pairs minus that of same-look-other-content pairs."""
    sims = z @ z.T
    same_content = (contents[:, None] == contents[None]) & (looks[:, None] != looks[None])
    same_look = (looks[:, None] == looks[None]) & (contents[:, None] != contents[None])
    return float(sims[same_content].mean() - sims[same_look].mean())


def test_content_head_runs_on_the_shared_pass_and_sees_through_looks() -> None:
    frames, looks, contents = _frames()
    embedder = Embedder(EmbedConfig(descriptors=("content", "content_head"), short_side=96))
    vectors = embedder.embed(frames)
    z = vectors["content_head"]
    assert z.shape == (16, 896) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert CONTENT_HEAD_MODEL in embedder.identity["models"]
    # the descriptor is the shipped head on the EfficientNet's stage-5 map: no second encoder
    encoder, head = load_model("effnet-lite0"), load_model(CONTENT_HEAD_MODEL)
    image = resize_short_side(torch.from_numpy(frames[5]).permute(2, 0, 1).float() / 255, 96)
    with torch.inference_mode():
        expected = head(encoder(image[None], (HEAD_TAP,))[HEAD_TAP])[0].numpy()
    assert np.allclose(z[5], expected, atol=2e-3)
    # trained on the look families, it tells contents apart through halftone, mosaic, sketch and cin26
    # better than the untrained descriptor it starts from
    head_margin = _margin(z, looks, contents)
    assert head_margin > 0.2
    assert head_margin > _margin(vectors["content"], looks, contents) + 0.1
