"""Released-layout weights: save → load exactness, the strict loader's errors, dtypes, shards, config mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from model_support import saved_tiny_model, text_page, tiny_model

from optical_memory.core.geometry import Mode
from optical_memory.model.auto import load_backend
from optical_memory.model.checkpoint import CheckpointError, parse_dtype
from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig
from optical_memory.model.modeling_deepseek_ocr import DeepSeekOCR
from optical_memory.model.preprocessing import preprocess

# The released config.json of deepseek-ai/DeepSeek-OCR (auto_map and other code pointers left out).
RELEASED_CONFIG = {
    "_name_or_path": "deepseek-ai/DeepSeek-OCR",
    "architectures": ["DeepseekOCRForCausalLM"],
    "candidate_resolutions": [[1024, 1024]],
    "global_view_pos": "head",
    "language_config": {
        "architectures": ["DeepseekV2ForCausalLM"],
        "bos_token_id": 0,
        "eos_token_id": 1,
        "first_k_dense_replace": 1,
        "hidden_size": 1280,
        "intermediate_size": 6848,
        "kv_lora_rank": None,
        "lm_head": True,
        "max_position_embeddings": 8192,
        "moe_intermediate_size": 896,
        "n_group": 1,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "num_attention_heads": 10,
        "num_experts_per_tok": 6,
        "num_hidden_layers": 12,
        "num_key_value_heads": 10,
        "q_lora_rank": None,
        "qk_nope_head_dim": 0,
        "qk_rope_head_dim": 0,
        "rm_head": False,
        "topk_group": 1,
        "topk_method": "greedy",
        "torch_dtype": "bfloat16",
        "use_mla": False,
        "v_head_dim": 0,
        "vocab_size": 129280,
    },
    "model_type": "deepseek_vl_v2",
    "projector_config": {"input_dim": 2048, "model_type": "mlp_projector", "n_embed": 1280, "projector_type": "linear"},
    "tile_tag": "2D",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3",
    "vision_config": {
        "image_size": 1024,
        "mlp_ratio": 3.7362,
        "model_name": "deeplip_b_l",
        "model_type": "vision",
        "width": {
            "clip-l-14-224": {"heads": 16, "image_size": 224, "layers": 24, "patch_size": 14, "width": 1024},
            "sam_vit_b": {
                "downsample_channels": [512, 1024],
                "global_attn_indexes": [2, 5, 8, 11],
                "heads": 12,
                "layers": 12,
                "width": 768,
            },
        },
    },
    "bos_token_id": 0,
    "eos_token_id": 1,
    "first_k_dense_replace": 1,
    "hidden_size": 1280,
    "intermediate_size": 6848,
    "lm_head": True,
    "max_position_embeddings": 8192,
    "moe_intermediate_size": 896,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_attention_heads": 10,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 12,
    "num_key_value_heads": 10,
    "topk_method": "greedy",
    "use_mla": False,
    "vocab_size": 129280,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, DeepSeekOCR]:
    directory = tmp_path_factory.mktemp("tiny-ocr")
    return directory, saved_tiny_model(directory, seed=3)


def _logits(model: DeepSeekOCR, image_seed: int = 0) -> torch.Tensor:
    inputs = preprocess([text_page(700, 900, f"seed {image_seed}")], Mode.TINY)
    ids = [0] + [model.config.image_token_id] * inputs.decoder_positions[0] + [5, 6, 7]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), **inputs.to(dtype=model.dtype).model_kwargs()).logits


def _rewrite(source: Path, target: Path, edit) -> Path:
    target.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (target / name).write_bytes((source / name).read_bytes())
    tensors = load_file(source / "model.safetensors")
    edit(tensors)
    save_file(tensors, target / "model.safetensors")
    return target


def test_saved_directory_holds_the_released_layout(saved):
    directory, model = saved
    assert sorted(path.name for path in directory.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "deepseek_vl_v2"
    assert config["vision_config"]["width"]["sam_vit_b"]["downsample_channels"] == [24, 32]
    tensors = load_file(directory / "model.safetensors")
    assert tensors["model.vision_model.transformer.layers.1.self_attn.qkv_proj.weight"].shape == (96, 32)
    assert tensors["model.layers.1.mlp.experts.7.gate_proj.weight"].shape == (16, 64)
    assert "model.view_seperator" in tensors and "model.sam_model.net_3.weight" in tensors


def test_save_then_load_is_exact(saved):
    directory, model = saved
    loaded = DeepSeekOCR.from_pretrained(directory)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[name], restored[name]) for name in original)
    assert torch.equal(_logits(model), _logits(loaded))
    assert loaded.tokenizer.encode("Free OCR.") == model.tokenizer.encode("Free OCR.")
    assert not loaded.training
    assert torch.equal(loaded.language_model.rotary_emb.inv_freq, model.language_model.rotary_emb.inv_freq)


def test_vision_changes_the_logits(saved):
    _, model = saved
    assert not torch.allclose(_logits(model, 0), _logits(model, 1))


def test_released_clip_qkv_rows_are_query_key_value(saved):
    directory, model = saved
    tensors = load_file(directory / "model.safetensors")
    prefix = "model.vision_model.transformer.layers.0.self_attn."
    hidden = torch.randn(1, 5, 32)
    qkv = F.linear(hidden, tensors[prefix + "qkv_proj.weight"], tensors[prefix + "qkv_proj.bias"])
    query, key, value = qkv.view(1, 5, 3, 2, 16).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).reshape(1, 5, 32)
    expected = F.linear(attended, tensors[prefix + "out_proj.weight"], tensors[prefix + "out_proj.bias"])
    with torch.no_grad():
        actual, _ = model.vision.clip.layers[0].self_attn(hidden)
    assert torch.allclose(actual, expected, atol=1e-5)


def test_released_experts_compute_the_moe_layer(saved):
    directory, model = saved
    tensors = load_file(directory / "model.safetensors")
    text = model.config.text_config
    hidden = torch.randn(3, text.hidden_size)
    prefix = "model.layers.1.mlp."
    scores = F.linear(hidden, tensors[prefix + "gate.weight"]).softmax(-1)
    weights, chosen = scores.topk(text.num_experts_per_tok, dim=-1)

    def swiglu(x, name):
        gate = F.linear(x, tensors[f"{name}gate_proj.weight"])
        up = F.linear(x, tensors[f"{name}up_proj.weight"])
        return F.linear(F.silu(gate) * up, tensors[f"{name}down_proj.weight"])

    expected = swiglu(hidden, prefix + "shared_experts.")
    for token in range(3):
        for weight, expert in zip(weights[token], chosen[token]):
            expected[token] += weight * swiglu(hidden[token], f"{prefix}experts.{int(expert)}.")
    with torch.no_grad():
        actual = model.language_model.layers[1].mlp(hidden[None])[0]
    assert torch.allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize(("dtype", "expected"), [("bf16", torch.bfloat16), (torch.float16, torch.float16)])
def test_load_honours_dtype_and_keeps_rope_in_fp32(saved, dtype, expected):
    directory, model = saved
    loaded = DeepSeekOCR.from_pretrained(directory, dtype=dtype, device="cpu")
    assert {parameter.dtype for parameter in loaded.parameters()} == {expected}
    assert loaded.language_model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight.to(expected))
    assert loaded.device == torch.device("cpu")


def test_parse_dtype_rejects_unsupported_names():
    assert parse_dtype("bfloat16") is torch.bfloat16 and parse_dtype("torch.float32") is torch.float32
    with pytest.raises(ValueError, match="dtype"):
        parse_dtype("int8")


def test_strict_loader_lists_missing_unexpected_and_mis_shaped_keys_in_one_error(saved, tmp_path):
    directory, _ = saved

    def corrupt(tensors):
        del tensors["model.layers.1.mlp.experts.3.up_proj.weight"]
        del tensors["model.sam_model.blocks.0.attn.rel_pos_h"]
        tensors["model.vision_model.post_layernorm.weight"] = torch.ones(32)
        tensors["model.projector.layers.weight"] = torch.zeros(64, 63)

    broken = _rewrite(directory, tmp_path / "broken", corrupt)
    with pytest.raises(CheckpointError) as caught:
        DeepSeekOCR.from_pretrained(broken)
    error = caught.value
    assert error.missing == ["model.layers.1.mlp.experts.3.up_proj.weight", "model.sam_model.blocks.0.attn.rel_pos_h"]
    assert error.unexpected == ["model.vision_model.post_layernorm.weight"]
    assert error.mis_shaped == ["model.projector.layers.weight"]
    message = str(error)
    for name in [*error.missing, *error.unexpected, *error.mis_shaped]:
        assert name in message
    assert "[64, 63] != expected [64, 64]" in message


def test_truncated_safetensors_names_the_file(saved, tmp_path):
    directory, _ = saved
    target = tmp_path / "truncated"
    target.mkdir()
    (target / "config.json").write_bytes((directory / "config.json").read_bytes())
    data = (directory / "model.safetensors").read_bytes()
    (target / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        DeepSeekOCR.from_pretrained(target)


def test_corrupt_safetensors_names_the_file(saved, tmp_path):
    directory, _ = saved
    target = tmp_path / "corrupt"
    target.mkdir()
    (target / "config.json").write_bytes((directory / "config.json").read_bytes())
    (target / "model-00001-of-000001.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="model-00001-of-000001.safetensors"):
        DeepSeekOCR.from_pretrained(target)


def test_missing_directory_or_files_list_what_is_expected(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DeepSeekOCR.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json.*model\.safetensors"):
        DeepSeekOCR.from_pretrained(empty)
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / "config.json").write_bytes((saved[0] / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="model.safetensors.index.json"):
        DeepSeekOCR.from_pretrained(only_config)


def test_sharded_checkpoint_with_index_loads_identically(saved, tmp_path):
    directory, model = saved
    target = tmp_path / "sharded"
    target.mkdir()
    (target / "config.json").write_bytes((directory / "config.json").read_bytes())
    tensors = load_file(directory / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, shard_names in shards.items():
        save_file({name: tensors[name] for name in shard_names}, target / shard)
    weight_map = {name: shard for shard, shard_names in shards.items() for name in shard_names}
    (target / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = DeepSeekOCR.from_pretrained(target)
    assert loaded.tokenizer is None
    assert torch.equal(_logits(loaded), _logits(model))
    (target / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        DeepSeekOCR.from_pretrained(target)


def test_released_config_maps_onto_the_full_preset():
    config = DeepSeekOCRConfig.from_released(RELEASED_CONFIG)
    assert config.to_dict() == DeepSeekOCRConfig.full().to_dict()
    assert config.text_config.mlp_layer_types == ["dense"] + ["sparse"] * 11
    assert config.text_config.rope_parameters["rope_theta"] == 10000.0
    assert config.image_token_id == 128815
    assert DeepSeekOCRConfig.from_released(config.to_released()).to_dict() == config.to_dict()


def test_tiny_config_round_trips_through_the_released_layout():
    tiny = DeepSeekOCRConfig.tiny()
    assert DeepSeekOCRConfig.from_released(tiny.to_released()).to_dict() == tiny.to_dict()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c["language_config"].update(use_mla=True), "use_mla"),
        (lambda c: c["language_config"].update(norm_topk_prob=True), "norm_topk_prob"),
        (lambda c: c["projector_config"].update(projector_type="mlp_gelu"), "projector_type"),
        (lambda c: c["projector_config"].update(input_dim=1024), "input_dim"),
        (lambda c: c["vision_config"].update(model_name="deepencoderv2"), "model_name"),
        (lambda c: c.update(model_type="llama"), "model_type"),
        (lambda c: c["vision_config"]["width"]["clip-l-14-224"].update(width=768), "hidden_size"),
    ],
)
def test_unsupported_released_configs_name_the_field(edit, field):
    config = json.loads(json.dumps(RELEASED_CONFIG))
    edit(config)
    with pytest.raises(ValueError, match=field):
        DeepSeekOCRConfig.from_released(config)


def test_load_backend_picks_deepseek_ocr_and_rejects_unknown_types(saved, tmp_path):
    directory, _ = saved
    assert isinstance(load_backend(directory), DeepSeekOCR)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="llama"):
        load_backend(other)


def test_model_rejects_tied_embeddings():
    config = DeepSeekOCRConfig.tiny()
    config.tie_word_embeddings = True
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        DeepSeekOCR(config)


def test_meta_built_model_has_no_storage_until_loaded(saved):
    directory, _ = saved
    with torch.device("meta"):
        skeleton = tiny_model(with_tokenizer=False)
    assert all(parameter.is_meta for parameter in skeleton.parameters())
    loaded = DeepSeekOCR.from_pretrained(directory)
    assert not any(tensor.is_meta for tensor in [*loaded.parameters(), *loaded.buffers()])
