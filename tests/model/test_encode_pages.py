"""A context's image pages feed the DeepEncoder: they become vision embeddings in the decoder's layout."""

import random

import pytest
import torch
from optical_memory.policies import AgeSchedule
from model_support import tiny_model

from optical_memory import OpticalMemory
from optical_memory.model.deepencoder import encode_pages


def test_encode_gives_each_image_page_its_mode_positions():
    rng = random.Random(5)
    words = "ledger invoice parcel harbour lantern meadow orbit quartz".split()
    ladder = AgeSchedule(turn_steps=((12, 0), (24, 1), (36, 2), (1000, 3)), time_steps=None)
    with OpticalMemory.open(":memory:", hot_turns=2, policy=ladder) as memory:
        for i in range(60):
            memory.add("user" if i % 2 else "assistant", " ".join(rng.choice(words) for _ in range(70)), timestamp=float(i))
        ctx = memory.context(now=60.0)
        model = tiny_model(seed=3)
        embeddings = encode_pages(model, ctx.pages)
    image_views = [view for view in ctx.pages if view.mode is not None]
    assert len({view.mode for view in image_views}) >= 3
    assert [e.mode for e in embeddings] == [view.mode for view in image_views]
    assert [e.positions for e in embeddings] == [view.mode.decoder_positions() for view in image_views]
    assert sum(e.positions for e in embeddings) == ctx.report.decoder_positions
    assert sum(e.valid_tokens for e in embeddings) == ctx.report.image_tokens
    assert all(e.embeddings.shape[1] == model.config.text_config.hidden_size for e in embeddings)
    assert all(torch.isfinite(e.embeddings).all() for e in embeddings)


def test_encode_refuses_host_contexts():
    with OpticalMemory.open(":memory:", hot_turns=0) as memory:
        memory.add("user", "hello " * 300)
        memory.flush()
        with pytest.raises(ValueError, match="deepseek-ocr"):
            encode_pages(tiny_model(), memory.context(consumer="anthropic").pages)
