"""Every official config builds, saves and reloads strictly, with the published key names."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos import MODEL_CONFIGS, TOKENIZER_CONFIGS, CheckpointError, Kronos, KronosPredictor, KronosTokenizer
from kronos.hub import resolve_spec

PARAMS = {"Kronos-Tokenizer-base": (3_958_042, 96), "Kronos-Tokenizer-2k": (3_958_042, 96),
          "Kronos-mini": (4_108_032, 80), "Kronos-small": (24_741_376, 136), "Kronos-base": (102_310_592, 192)}


def _build(name: str):
    if name in TOKENIZER_CONFIGS:
        return KronosTokenizer(**TOKENIZER_CONFIGS[name])
    return Kronos(**MODEL_CONFIGS[name])


@pytest.mark.parametrize("name", list(PARAMS))
def test_official_config_roundtrip(name, tmp_path):
    torch.manual_seed(1)
    module = _build(name)
    params, tensors = PARAMS[name]
    assert sum(p.numel() for p in module.parameters()) == params
    assert len(module.state_dict()) == tensors
    module.save_pretrained(tmp_path / name)
    saved = json.loads((tmp_path / name / "config.json").read_text())
    assert saved == (TOKENIZER_CONFIGS | MODEL_CONFIGS)[name]
    loaded = type(module).from_pretrained(tmp_path / name)
    assert not loaded.training, "from_pretrained must return eval mode"
    for key, value in module.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_published_key_names():
    tok_keys = set(_build("Kronos-Tokenizer-base").state_dict())
    assert {"embed.weight", "head.bias", "encoder.2.self_attn.rotary.inv_freq", "decoder.2.ffn.w3.weight",
            "quant_embed.weight", "post_quant_embed_pre.bias", "post_quant_embed.weight",
            "tokenizer.bsq.basis", "tokenizer.bsq.group_basis"} <= tok_keys
    assert "encoder.3.norm1.weight" not in tok_keys and not any("group_codebook" in k for k in tok_keys)
    model = _build("Kronos-mini")
    keys = set(model.state_dict())
    assert {"embedding.emb_s1.weight", "embedding.fusion_proj.bias", "time_emb.minute_embed.weight",
            "time_emb.month_embed.weight", "transformer.3.self_attn.q_proj.bias", "norm.weight",
            "dep_layer.cross_attn.rotary.inv_freq", "dep_layer.norm.weight", "head.proj_s1.weight",
            "head.proj_s2.bias"} <= keys
    assert model.state_dict()["dep_layer.cross_attn.rotary.inv_freq"].shape == (256 // 8,)
    assert model.state_dict()["time_emb.day_embed.weight"].shape == (32, 256)


def test_strict_loading_names_bad_keys(tmp_path):
    model = _build("Kronos-mini")
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("norm.weight")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: norm\.weight.*unexpected keys: extra\.weight"):
        Kronos.from_pretrained(tmp_path)


def test_shape_mismatch_and_wrong_config(tmp_path):
    _build("Kronos-mini").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "ff_dim": 256}))
    with pytest.raises(CheckpointError, match="shape mismatches: transformer.0.ffn"):
        Kronos.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "bogus": 1}))
    with pytest.raises(CheckpointError, match="does not describe a Kronos"):
        Kronos.from_pretrained(tmp_path)


def test_no_pickle_checkpoints(tmp_path):
    torch.save({}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(MODEL_CONFIGS["Kronos-mini"]))
    with pytest.raises(CheckpointError, match="pickle checkpoints are not supported"):
        Kronos.from_pretrained(tmp_path)


def test_short_names_resolve():
    assert resolve_spec("kronos-mini").model == "NeoQuasar/Kronos-mini"
    assert resolve_spec("kronos-mini").tokenizer == "NeoQuasar/Kronos-Tokenizer-2k"
    assert resolve_spec("kronos-mini").max_context == 2048
    for name in ("kronos-small", "kronos-base"):
        assert resolve_spec(name).tokenizer == "NeoQuasar/Kronos-Tokenizer-base"
        assert resolve_spec(name).max_context == 512
    with pytest.raises(CheckpointError, match="unknown model 'kronos-huge'"):
        resolve_spec("kronos-huge")


def test_offline_hub_failure_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="not in the local hub cache.*pass that directory"):
        Kronos.from_pretrained("kronos-small", cache_dir=str(tmp_path / "hf"))


def test_hub_cache_layout_loads_offline(tmp_path, monkeypatch):
    """A populated hub cache (the layout huggingface_hub writes) loads with HF_HUB_OFFLINE."""
    for repo, module in (("NeoQuasar/Kronos-mini", _build("Kronos-mini")),
                         ("NeoQuasar/Kronos-Tokenizer-2k", _build("Kronos-Tokenizer-2k"))):
        snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / ("a" * 40)
        module.save_pretrained(snapshot)
        refs = snapshot.parent.parent / "refs"
        refs.mkdir()
        (refs / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    predictor = KronosPredictor.from_pretrained("kronos-mini", device="cpu", cache_dir=str(tmp_path))
    assert predictor.max_context == 2048
    assert not predictor.model.training and not predictor.tokenizer.training
