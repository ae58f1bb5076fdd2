"""Prompt layout, forward with pixels or pre-encoded vision, greedy generation with the KV cache, readers, OCR-2."""

from __future__ import annotations

import pytest
import torch
from model_support import text_page, tiny_model, tiny_ocr2_model, tiny_tokenizer

from optical_memory.core.geometry import Mode
from optical_memory.model.auto import load_backend
from optical_memory.model.deepencoder import encode_views
from optical_memory.model.ocr2 import DeepSeekOCR2
from optical_memory.model.preprocessing import preprocess
from optical_memory.model.prompts import FREE_OCR_PROMPT, build_prompt_ids
from optical_memory.readers.base import Reader
from optical_memory.readers.deepseek import DeepSeekOCRReader


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5)


def _prompt(model, mode: Mode, image) -> tuple[torch.Tensor, dict]:
    inputs = preprocess([image], mode)
    ids = build_prompt_ids(
        model.tokenizer, FREE_OCR_PROMPT, inputs.decoder_positions, bos_token_id=0, image_token_id=3
    )
    return torch.tensor([ids]), inputs.model_kwargs()


def test_prompt_is_bos_then_image_positions_then_the_instruction():
    tokenizer = tiny_tokenizer()
    ids = build_prompt_ids(tokenizer, "<image>\nFree OCR.", [73], bos_token_id=0, image_token_id=3)
    instruction = tokenizer.encode("\nFree OCR.", add_special_tokens=False)
    assert ids == [0] + [3] * 73 + instruction
    assert 1 not in ids
    two = build_prompt_ids(tokenizer, "A<image>B<image>", [2, 5], bos_token_id=0, image_token_id=3)
    assert two == [0, *tokenizer.encode("A", add_special_tokens=False), 3, 3,
                   *tokenizer.encode("B", add_special_tokens=False), 3, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="markers"):
        build_prompt_ids(tokenizer, "no marker", [73], bos_token_id=0, image_token_id=3)


def test_pre_encoded_vision_gives_the_same_logits_as_pixels(model):
    image = text_page(800, 600)
    input_ids, pixels = _prompt(model, Mode.SMALL, image)
    [embedding] = encode_views(model, [image], [Mode.SMALL])
    with torch.no_grad():
        from_pixels = model(input_ids=input_ids, **pixels).logits
        from_embeddings = model(input_ids=input_ids, vision_embeddings=[embedding]).logits
    assert from_pixels.shape == (1, input_ids.shape[1], model.config.text_config.vocab_size)
    assert torch.allclose(from_pixels, from_embeddings, atol=1e-5)


def test_forward_rejects_inconsistent_vision_inputs(model):
    input_ids, pixels = _prompt(model, Mode.TINY, text_page(300, 300))
    with pytest.raises(ValueError, match="<image> positions"):
        model(input_ids=input_ids[:, :-10], **pixels)
    with pytest.raises(ValueError, match="not both"):
        model(input_ids=input_ids, vision_embeddings=[torch.zeros(73, 64)], **pixels)
    with pytest.raises(ValueError, match="exactly one"):
        model()


def test_cached_greedy_generation_matches_recomputing_every_step(model):
    input_ids, pixels = _prompt(model, Mode.TINY, text_page(500, 700))
    settings = {"do_sample": False, "max_new_tokens": 12, "eos_token_id": 1, "pad_token_id": 2}
    cached = model.generate(input_ids=input_ids, **pixels, use_cache=True, **settings)
    recomputed = model.generate(input_ids=input_ids, **pixels, use_cache=False, **settings)
    assert cached.shape[1] > input_ids.shape[1]
    assert torch.equal(cached, recomputed)


def test_generation_from_pre_encoded_vision_matches_generation_from_pixels(model):
    image = text_page(700, 500)
    input_ids, pixels = _prompt(model, Mode.SMALL, image)
    settings = {"do_sample": False, "max_new_tokens": 8, "eos_token_id": 1, "pad_token_id": 2}
    [embedding] = encode_views(model, [image], [Mode.SMALL])
    from_pixels = model.generate(input_ids=input_ids, **pixels, **settings)
    from_embeddings = model.generate(input_ids=input_ids, vision_embeddings=[embedding], **settings)
    assert torch.equal(from_pixels, from_embeddings)


def test_generation_is_deterministic_under_a_seed():
    image = text_page(900, 1300)
    first = tiny_model(seed=11).ocr(image, Mode.SMALL, max_new_tokens=16)
    second = tiny_model(seed=11).ocr(image, Mode.SMALL, max_new_tokens=16)
    other_seed = tiny_model(seed=12).ocr(image, Mode.SMALL, max_new_tokens=16)
    assert isinstance(first, str) and first
    assert first == second
    assert first != other_seed


def test_no_repeat_ngram_guard_changes_a_looping_decode(model):
    input_ids, pixels = _prompt(model, Mode.TINY, text_page(500, 700))
    settings = {"do_sample": False, "max_new_tokens": 30, "eos_token_id": 1, "pad_token_id": 2}
    free = model.generate(input_ids=input_ids, **pixels, no_repeat_ngram_size=0, **settings)[0, input_ids.shape[1] :]
    guarded = model.generate(input_ids=input_ids, **pixels, no_repeat_ngram_size=3, **settings)[0, input_ids.shape[1] :]
    trigrams = [tuple(guarded[i : i + 3].tolist()) for i in range(len(guarded) - 2)]
    free_trigrams = [tuple(free[i : i + 3].tolist()) for i in range(len(free) - 2)]
    assert len(set(free_trigrams)) < len(free_trigrams)
    assert len(set(trigrams)) == len(trigrams)


def test_gundam_page_generates_with_tiles(model):
    text = model.ocr(text_page(1300, 640), Mode.GUNDAM, max_new_tokens=4)
    assert isinstance(text, str)


def test_reader_reads_through_the_model(model):
    reader = DeepSeekOCRReader(model, max_new_tokens=10)
    image = text_page(640, 640)
    assert isinstance(reader, Reader) and reader.name == "deepseek-ocr"
    assert reader.read(image, Mode.SMALL) == model.ocr(image, Mode.SMALL, max_new_tokens=10)
    assert reader.read(image) == model.ocr(image, Mode.SMALL, max_new_tokens=10)
    assert "max_new_tokens=10" in reader.fingerprint
    with pytest.raises(ValueError, match="max_new_tokens"):
        DeepSeekOCRReader(model, max_new_tokens=0)
    with pytest.raises(ValueError, match="<image>"):
        DeepSeekOCRReader(model, prompt="Free OCR.")
    with pytest.raises(TypeError, match="ocr"):
        DeepSeekOCRReader(object())


def test_reader_loads_a_weights_directory(tmp_path):
    saved = tiny_model(seed=7)
    saved.save_pretrained(tmp_path)
    reader = DeepSeekOCRReader(str(tmp_path), max_new_tokens=6)
    image = text_page(512, 512)
    assert reader.read(image, Mode.TINY) == saved.ocr(image, Mode.TINY, max_new_tokens=6)
    assert str(tmp_path.resolve()) in reader.fingerprint


def test_ocr_without_tokenizer_says_so():
    bare = tiny_model(seed=2, with_tokenizer=False)
    with pytest.raises(ValueError, match="tokenizer"):
        bare.ocr(text_page(200, 200), Mode.TINY)


@pytest.fixture(scope="module")
def ocr2_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-ocr2")
    backend = DeepSeekOCR2(tiny_ocr2_model(seed=4), DeepSeekOCR2.build_processor(tiny_tokenizer()))
    backend.save_pretrained(directory)
    return directory, backend


def test_ocr2_backend_is_chosen_by_model_type_and_reads(ocr2_dir):
    directory, original = ocr2_dir
    loaded = load_backend(directory)
    assert isinstance(loaded, DeepSeekOCR2)
    image = text_page(600, 500)
    text = loaded.ocr(image, max_new_tokens=6)
    assert isinstance(text, str) and text
    assert text == original.ocr(image, max_new_tokens=6)
    assert loaded.ocr(image, Mode.BASE, max_new_tokens=6) == loaded.ocr(image, Mode.BASE, max_new_tokens=6)
    reader = DeepSeekOCRReader(loaded, max_new_tokens=6)
    assert reader.name == "deepseek-ocr-2" and reader.read(image) == text
    with pytest.raises(TypeError, match="tokenizer"):
        DeepSeekOCRReader(loaded, tokenizer=tiny_tokenizer())


def test_ocr2_forward_and_cached_generation(ocr2_dir):
    _, backend = ocr2_dir
    inputs = backend.processor(images=text_page(600, 500), text=FREE_OCR_PROMPT, return_tensors="pt")
    with torch.no_grad():
        logits = backend.model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    settings = {"do_sample": False, "max_new_tokens": 5, "eos_token_id": 1, "pad_token_id": 2}
    cached = backend.model.generate(**inputs, use_cache=True, **settings)
    recomputed = backend.model.generate(**inputs, use_cache=False, **settings)
    assert torch.equal(cached, recomputed)


def test_ocr2_rejects_a_v1_directory(tmp_path):
    tiny_model(seed=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="deepseek_ocr2"):
        DeepSeekOCR2.from_pretrained(tmp_path)
