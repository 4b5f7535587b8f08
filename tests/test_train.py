"""Short training runs on a slice of Multi30k lower validation loss for both objectives; resume works."""
import json

import pytest
import torch

from gmlm_engine.cli import build_parser
from gmlm_engine.train import make_batch, Examples
from gmlm_engine.config import ModelConfig
from gmlm_engine.tokenizer import Tokenizer
from conftest import TINY_GMLM


def train(out, objective, data_dir, steps, extra=()):
    args = build_parser().parse_args([
        "train", "--objective", objective, "--out", str(out), "--data-dir", data_dir, "--train-limit", "1500",
        "--spm", str(TINY_GMLM / "spm.model"), "--d-model", "32", "--d-kv", "8", "--d-ff", "64", "--heads", "4",
        "--encoder-layers", "2", "--decoder-layers", "2", "--max-tokens", "1024", "--lr", "3e-3", "--warmup", "10",
        "--max-steps", str(steps), "--val-every", "25", "--val-bleu-sentences", "4", "--threads", "1",
        "--no-progress", "--max-target-len", "64", "--max-source-len", "64", *extra])
    assert args.func(args) == 0
    return [json.loads(line) for line in (out / "train.log").read_text().splitlines()]


@pytest.mark.parametrize("objective", ["gmlm", "ar"])
def test_short_training_lowers_validation_loss_and_resumes(tmp_path, multi30k, objective):
    hist = train(tmp_path, objective, multi30k, 100)
    assert [h["step"] for h in hist] == [25, 50, 75, 100]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.3
    assert all("val_bleu" in h for h in hist)
    for d in ("best", "last", "averaged"):
        assert (tmp_path / d / "model.safetensors").is_file() and (tmp_path / d / "config.json").is_file()
    card = json.loads((tmp_path / "last" / "training.json").read_text())
    assert card["steps"] == 100 and card["objective"] == objective
    hist = train(tmp_path, objective, multi30k, 125, ["--resume"])
    assert [h["step"] for h in hist][-1] == 125 and len(hist) == 5


def test_gmlm_masking_ratio_and_corruption():
    tok = Tokenizer(TINY_GMLM / "spm.model")
    cfg = ModelConfig(objective="gmlm", vocab_size=tok.vocab_size, max_target_len=64, mask_id=3, len_id=4)
    tgt = [" ".join(["a man"] * (i % 10 + 1)) for i in range(400)]
    ex = Examples(tok, cfg, ["x y"] * 400, tgt)
    gen = torch.Generator().manual_seed(0)
    b = make_batch(ex, list(range(400)), cfg, gen)
    valid = b["tgt_mask"]
    noised = b["labels"] != -100
    assert (noised.sum(1) >= 1).all()                                   # at least one token per sentence
    assert (noised <= valid).all()
    assert ((b["tgt_in"] == cfg.mask_id) == noised).all()               # no corruption: all noised are <mask>
    ratio = noised.sum(1).float() / valid.sum(1)
    assert 0.4 < ratio.mean() < 0.65 and ratio.max() == 1.0            # ratio ~ U(0, 1]
    assert (b["length_labels"] == valid.sum(1) - 1).all()
    b = make_batch(ex, list(range(400)), cfg, gen, corrupt=(0.2, 0.3))
    noised = b["labels"] != -100
    is_mask = (b["tgt_in"] == cfg.mask_id) & noised
    kept = (b["tgt_in"] == b["labels"]) & noised
    share_mask = is_mask.sum() / noised.sum()
    assert 0.4 < share_mask < 0.6 and 0.15 < kept.sum() / noised.sum() < 0.3
