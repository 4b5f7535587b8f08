"""Shapes and masks of the PyTorch model; Hugging Face T5 parity; T5 initialisation."""
import pytest
import torch

from gmlm_engine.config import ModelConfig
from gmlm_engine.pytorch.model import T5Model, load_torch_model
from conftest import TINY_AR, TINY_GMLM


def small(objective, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(objective=objective, vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_heads=4,
                      num_encoder_layers=2, num_decoder_layers=2, max_target_len=20, max_source_len=20,
                      dropout_rate=0.0, **kw)
    return T5Model(cfg.validate()).eval()


def run(m, src, tgt):
    src, tgt = torch.tensor(src), torch.tensor(tgt)
    return m(src, src != 0, tgt, torch.ones_like(tgt, dtype=torch.bool))


@pytest.mark.parametrize("objective", ["gmlm", "ar"])
def test_shapes(objective):
    m = small(objective)
    logits, len_logits = run(m, [[4, 5, 6, 1]], [[7, 8, 9]])
    assert logits.shape == (1, 3, 50)
    assert (len_logits.shape == (1, 20)) if objective == "gmlm" else len_logits is None


def test_gmlm_decoder_is_bidirectional_ar_is_causal():
    for objective, expect_change in (("gmlm", True), ("ar", False)):
        m = small(objective)
        a, _ = run(m, [[4, 5, 6, 1]], [[7, 8, 9, 10]])
        b, _ = run(m, [[4, 5, 6, 1]], [[7, 8, 9, 11]])       # change only the last target token
        changed = not torch.allclose(a[0, 0], b[0, 0], atol=1e-6)
        assert changed == expect_change, objective
        assert not torch.allclose(a[0, 3], b[0, 3])


@pytest.mark.parametrize("objective", ["gmlm", "ar"])
def test_padding_never_leaks(objective):
    m = small(objective)
    src = torch.tensor([[4, 5, 6, 1, 0, 0], [7, 8, 9, 10, 11, 1]])
    tgt = torch.tensor([[7, 8, 0, 0], [12, 13, 14, 15]])
    other_src = torch.tensor([[4, 5, 6, 1, 0, 0, 0], [9, 9, 9, 9, 9, 9, 1]])
    other_tgt = torch.tensor([[7, 8, 0, 0, 0], [20, 21, 22, 23, 24]])
    la, lla = m(src, src != 0, tgt, tgt != 0)
    lb, llb = m(other_src, other_src != 0, other_tgt, other_tgt != 0)
    torch.testing.assert_close(la[0, :2], lb[0, :2], atol=1e-5, rtol=1e-5)
    if objective == "gmlm":
        torch.testing.assert_close(lla[0], llb[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_dir", [TINY_AR, None])
def test_ar_matches_hugging_face_t5(model_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    from gmlm_engine.pytorch.export import export_hf
    from gmlm_engine.pytorch.model import save_model_dir

    if model_dir is None:  # relu + tied embeddings (the other variant of T5)
        m = small("ar", tie_word_embeddings=True)
        model_dir = tmp_path / "m"
        save_model_dir(m, model_dir, TINY_AR / "spm.model")
    ours, _ = load_torch_model(model_dir)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(str(export_hf(model_dir, tmp_path / "hf"))).eval()
    src = torch.tensor([[10, 11, 12, 13, 1], [14, 15, 1, 0, 0]])
    dec = torch.tensor([[0, 20, 21, 22], [0, 23, 24, 25]])
    with torch.no_grad():
        a, _ = ours(src, src != 0, dec, torch.ones_like(dec, dtype=torch.bool))
        b = hf(input_ids=src, attention_mask=(src != 0).long(), decoder_input_ids=dec).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_gmlm_initialised_from_t5_checkpoint(tmp_path):
    from gmlm_engine.pytorch.export import export_hf
    from gmlm_engine.pytorch.train import init_from_t5

    hf_dir = export_hf(TINY_AR, tmp_path / "hf")
    ar, files = load_torch_model(TINY_AR)
    cfg = ModelConfig(**{**files.config.to_dict(), "objective": "gmlm"})
    g = T5Model(cfg)
    copied = init_from_t5(g, hf_dir)
    sd = g.state_dict()
    assert "length_head.weight" not in copied and "shared.weight" in copied
    for k, v in ar.state_dict().items():
        torch.testing.assert_close(sd[k], v)


def test_init_stretch_layers_maps_blocks_onto_another_depth(tmp_path):
    """--init-stretch-layers: a 2+2 checkpoint into a 4+1 model; encoder block i takes block i // 2, the one
    decoder block takes block 0, the relative position bias stays in block 0; without it only matching names copy."""
    from gmlm_engine.pytorch.export import export_hf
    from gmlm_engine.pytorch.train import init_from_t5

    hf_dir = export_hf(TINY_AR, tmp_path / "hf")
    ar, files = load_torch_model(TINY_AR)
    assert files.config.num_encoder_layers == 2 and files.config.num_decoder_layers == 2
    cfg = ModelConfig(**{**files.config.to_dict(), "objective": "gmlm", "num_encoder_layers": 4,
                         "num_decoder_layers": 1})
    plain, stretched = T5Model(cfg), T5Model(cfg)
    n_plain = len(init_from_t5(plain, hf_dir))
    copied = init_from_t5(stretched, hf_dir, stretch=True)
    assert len(copied) > n_plain
    src, dst = ar.state_dict(), stretched.state_dict()
    for i in range(4):
        for k in dst:
            if k.startswith(f"encoder.block.{i}.") and "relative_attention_bias" not in k:
                torch.testing.assert_close(dst[k], src[k.replace(f"block.{i}.", f"block.{i // 2}.", 1)])
    for k in dst:
        if k.startswith("decoder.block.0."):
            torch.testing.assert_close(dst[k], src[k])
    assert not any("block.1." in k and "relative_attention_bias" in k for k in copied)
    assert not torch.equal(plain.state_dict()["encoder.block.3.layer.0.SelfAttention.q.weight"],
                           dst["encoder.block.3.layer.0.SelfAttention.q.weight"])


@pytest.mark.parametrize("part", ["attention", "activation"])
def test_set_dropout_sets_attention_and_feed_forward_dropout_apart(part):
    """With cfg.dropout_rate 0, a train-mode forward is deterministic until set_dropout gives the attention
    probabilities or the feed-forward hidden units a rate of their own; eval mode ignores it."""
    m = small("ar").train()
    src, tgt = [[5, 6, 7, 1]], [[0, 8, 9, 10]]
    out = lambda: run(m, src, tgt)[0]  # noqa: E731
    assert torch.equal(out(), out())
    m.set_dropout(**{part: 0.5})
    assert not torch.equal(out(), out())
    m.eval()
    assert torch.equal(out(), out())
