"""Short training runs on a slice of Multi30k lower validation loss for both objectives; resume works."""
import json

import pytest
import torch

from gmlm_engine.tools.cli import build_parser
from gmlm_engine.pytorch.train import make_batch, Examples
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


@pytest.mark.parametrize("objective", ["gmlm", "ar", "ctc"])
def test_short_training_lowers_validation_loss_and_resumes(tmp_path, multi30k, objective):
    hist = train(tmp_path, objective, multi30k, 100, ["--glancing-ratio", "0.5"] if objective == "ctc" else [])
    assert [h["step"] for h in hist] == [25, 50, 75, 100]
    # (with the embedding's learning rate fixed most of the early drop happens before step 25)
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.2
    assert all("val_bleu" in h for h in hist)
    for d in ("best", "last", "averaged"):
        assert (tmp_path / d / "model.safetensors").is_file() and (tmp_path / d / "config.json").is_file()
    card = json.loads((tmp_path / "last" / "training.json").read_text())
    assert card["steps"] == 100 and card["objective"] == objective
    if objective == "ctc":
        cfg = json.loads((tmp_path / "last" / "config.json").read_text())
        assert cfg["ctc_upsample"] == 2 and "length_head.weight" not in ModelConfig.from_dict(cfg).weight_shapes()
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


def _relative_updates(embedding_lr_scale, steps=3):
    """Mean |update| / std(weight) of the shared embedding and of the attention/FFN matrices after a
    few AdamW steps of the trainer's optimiser on one batch."""
    from gmlm_engine.pytorch.model import T5Model
    from gmlm_engine.pytorch.train import compute_loss, param_groups

    torch.manual_seed(0)
    tok = Tokenizer(TINY_GMLM / "spm.model")
    cfg = ModelConfig(objective="ar", vocab_size=tok.vocab_size, d_model=64, d_kv=16, d_ff=128, num_heads=4,
                      num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0, max_target_len=32,
                      max_source_len=32, mask_id=3, len_id=4)
    model = T5Model(cfg)
    ex = Examples(tok, cfg, ["a man rides a bike"] * 8, ["ein mann fährt fahrrad"] * 8)
    b = make_batch(ex, list(range(8)), cfg, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(param_groups(model, 0.0, embedding_lr_scale), lr=1e-3)
    for g in opt.param_groups:
        g["lr"] = 1e-3 * g["lr_scale"]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    for _ in range(steps):
        loss, _, _ = compute_loss(model, b, 0.0, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rel = {}
    for k, p in model.named_parameters():
        if p.dim() != 2:
            continue
        moved = (p.detach() - before[k]).abs()
        rows = moved.sum(-1) > 0
        rel[k] = float(moved[rows].mean() / before[k].std())     # only the embedding rows the batch used
    matrices = [v for k, v in rel.items() if k.endswith((".q.weight", ".k.weight", ".v.weight", ".o.weight",
                                                          "wi.weight", "wo.weight"))]
    return rel["shared.weight"], sum(matrices) / len(matrices)


def test_embedding_learns_as_fast_as_the_matrices_under_adamw():
    # T5's std-1 shared embedding under one AdamW learning rate moves sqrt(d_model) times slower,
    # relative to its size, than every other matrix (the models issue's diagnosis); the trainer's
    # parameter groups must give it the same relative speed. 1.0 = the old, single learning rate.
    emb, mats = _relative_updates(None)
    assert 0.5 < emb / mats < 2.0, (emb, mats)
    emb_old, mats_old = _relative_updates(1.0)
    assert emb_old / mats_old < 0.25                  # the old parametrisation: ~1/sqrt(64) = 0.125


def test_param_groups_cover_every_parameter_once_and_keep_names():
    from gmlm_engine.pytorch.model import T5Model
    from gmlm_engine.pytorch.train import param_groups

    for objective in ("gmlm", "ar"):
        model = T5Model(ModelConfig(objective=objective, d_model=64, d_kv=16, d_ff=128, num_encoder_layers=1,
                                    num_decoder_layers=1, max_target_len=32, max_source_len=32))
        groups = {g["name"]: g for g in param_groups(model, 0.01)}
        ids = [id(p) for g in groups.values() for p in g["params"]]
        assert sorted(ids) == sorted(id(p) for p in model.parameters())
        emb = {id(p) for p in groups["embedding"]["params"]}
        named = dict(model.named_parameters())
        expect = {"shared.weight"} | ({"decoder.embed_positions.weight"} if objective == "gmlm" else set())
        assert emb == {id(named[k]) for k in expect}
        assert groups["embedding"]["lr_scale"] == 8.0 and groups["embedding"]["weight_decay"] == 0.0
        assert groups["decay"]["weight_decay"] == 0.01 and groups["decay"]["lr_scale"] == 1.0


def test_schedule_offset_continues_the_learning_rate_schedule():
    """--schedule-offset N: a model continued with --init-from picks up its inverse-sqrt schedule at step N
    (no second warm-up at peak lr); a negative offset is a ValueError naming the option."""
    from gmlm_engine.pytorch.train import _check, lr_at

    args = build_parser().parse_args(["train", "--objective", "ar", "--out", "x", "--schedule-offset", "2000",
                                      "--warmup", "300"])
    assert args.schedule_offset == 2000
    assert lr_at(args.schedule_offset + 1, 1e-3, 300) < 0.4e-3 < lr_at(300, 1e-3, 300)
    args.schedule_offset = -1
    with pytest.raises(ValueError, match="--schedule-offset"):
        _check(args)


def test_dropout_options_are_validated_and_default_to_the_common_rate():
    from gmlm_engine.pytorch.train import _check

    args = build_parser().parse_args(["train", "--objective", "ar", "--out", "x", "--dropout", "0.3",
                                      "--attention-dropout", "0.1"])
    assert (args.dropout, args.attention_dropout, args.activation_dropout) == (0.3, 0.1, None)
    _check(args)
    args.activation_dropout = 1.0
    with pytest.raises(ValueError, match="--activation-dropout"):
        _check(args)


def test_restart_warmup_ramps_a_continued_schedule_up_from_zero():
    """--restart-warmup N with --schedule-offset M: this run's step s (1-based) runs at s/N of the continued
    schedule for s < N and at the schedule from step N on; a negative value is a ValueError naming it."""
    from gmlm_engine.pytorch.train import _check, lr_at

    args = build_parser().parse_args(["train", "--objective", "gmlm", "--out", "x", "--schedule-offset", "6000",
                                      "--restart-warmup", "200", "--warmup", "300", "--max-steps", "1000"])
    assert args.restart_warmup == 200
    sched = lambda s: lr_at(6000 + s, 1e-3, 300)  # noqa: E731
    ramped = lambda s: lr_at(6000 + s, 1e-3, 300, 0, 0, 6000, args.restart_warmup)  # noqa: E731
    assert ramped(1) == pytest.approx(sched(1) / 200)
    assert ramped(50) == pytest.approx(sched(50) / 4)
    assert [ramped(s) for s in (200, 201, 999)] == [sched(s) for s in (200, 201, 999)]
    assert lr_at(300, 1e-3, 300, 0, 0, 0, 0) == lr_at(300, 1e-3, 300)     # off by default
    args.restart_warmup = -1
    with pytest.raises(ValueError, match="--restart-warmup"):
        _check(args)


def test_cooldown_decays_the_learning_rate_linearly_to_zero_at_max_steps():
    """--cooldown-steps N: the schedule is unchanged until N steps before --max-steps, then falls linearly
    to 0 (the last step runs at 1/N of the schedule); a value past --max-steps is a ValueError naming it."""
    from gmlm_engine.pytorch.train import _check, lr_at

    args = build_parser().parse_args(["train", "--objective", "gmlm", "--out", "x", "--max-steps", "1000",
                                      "--cooldown-steps", "400", "--warmup", "100"])
    assert args.cooldown_steps == 400
    plain = [lr_at(s, 1e-3, 100) for s in range(1, 1001)]
    cooled = [lr_at(s, 1e-3, 100, args.max_steps, args.cooldown_steps) for s in range(1, 1001)]
    assert cooled[:600] == plain[:600]
    assert cooled[700] == pytest.approx(plain[700] * 300 / 400)
    assert cooled[-1] == pytest.approx(plain[-1] / 400) and all(a > b for a, b in zip(cooled[599:], cooled[600:]))
    args.cooldown_steps = 1001
    with pytest.raises(ValueError, match="--cooldown-steps"):
        _check(args)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, multi30k):
    """An interrupted run resumed from its state ends with the weights of an uninterrupted one: the
    same batches in the same order, the same masks, the same dropout (the state records where in the
    epoch the run was and both random generators)."""
    from safetensors.torch import load_file

    # 1500 pairs at 1024 tokens are about 60 batches an epoch: the interruption at 40 is mid-epoch,
    # and the run crosses into the next epoch after it.
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, "gmlm", multi30k, 80, ["--val-every", "40"])
    train(split, "gmlm", multi30k, 40, ["--val-every", "40"])
    state = torch.load(split / "state.pt", weights_only=False)
    assert state["step"] == 40 and 0 < state["epoch_batch"] < 60
    hist = train(split, "gmlm", multi30k, 80, ["--val-every", "40", "--resume"])
    assert [h["step"] for h in hist] == [40, 80]
    a, b = load_file(straight / "last" / "model.safetensors"), load_file(split / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _untrained_first_pass():
    """An untrained tiny GMLM, a batch of 40 targets, and the model's own first pass over it (computed here
    independently of train.py): its log-probabilities (B, L, V)."""
    from gmlm_engine.pytorch.model import T5Model

    torch.manual_seed(0)
    tok = Tokenizer(TINY_GMLM / "spm.model")
    cfg = ModelConfig(objective="gmlm", vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                      num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0, max_target_len=64,
                      mask_id=3, len_id=4)
    model = T5Model(cfg).eval()
    ex = Examples(tok, cfg, ["x y z"] * 40, [" ".join(["a man rides"] * (i % 6 + 1)) for i in range(40)])
    gen = torch.Generator().manual_seed(0)
    b = make_batch(ex, list(range(40)), cfg, gen)
    valid = b["tgt_mask"]
    with torch.no_grad():
        h = model.decode(torch.where(valid, cfg.mask_id, cfg.pad_id), valid, model.encode(b["src"], b["src_mask"]),
                         b["src_mask"])
        logp = torch.log_softmax(model.vocab_logits(h), -1)
    return model, cfg, gen, b, logp


def test_glancing_masks_as_many_positions_as_the_first_pass_got_wrong_minus_the_revealed_share():
    from gmlm_engine.pytorch.train import glance

    model, cfg, gen, b, logp = _untrained_first_pass()
    valid, ref = b["tgt_mask"], b["target"]
    wrong = ((logp.argmax(-1) != ref) & valid).sum(1)
    assert (wrong > 0).all()                                            # an untrained model errs everywhere
    for ratio in (0.0, 0.5, 1.0):
        g = glance(model, b, cfg, gen, ratio, share=1.0)
        masked = g["labels"] != -100
        expect = torch.clamp(valid.sum(1) - torch.round(ratio * wrong.float()).long(), min=1)
        assert (masked.sum(1) == expect).all()
        assert (masked <= valid).all() and ((g["tgt_in"] == cfg.mask_id) == masked).all()
        assert (g["labels"][masked] == ref[masked]).all()               # masked positions predict the reference
        shown = valid & ~masked
        assert (g["tgt_in"][shown] == ref[shown]).all()                 # revealed positions carry the reference
    same = glance(model, b, cfg, gen, 0.5, share=0.0)                   # share 0: the uniform masks stay
    assert torch.equal(same["tgt_in"], b["tgt_in"]) and torch.equal(same["labels"], b["labels"])
    mixed = glance(model, b, cfg, gen, 0.0, share=0.5)
    glanced = ((mixed["labels"] != -100) == valid).all(1)
    assert 8 < int(glanced.sum()) < 32


def test_predicted_context_masks_the_least_confident_positions_and_shows_the_models_own_predictions():
    from gmlm_engine.pytorch.train import predicted_context

    model, cfg, gen, b, logp = _untrained_first_pass()
    valid, ref = b["tgt_mask"], b["target"]
    conf, pred = logp.max(-1)
    g = predicted_context(model, b, cfg, gen, share=1.0)
    masked = g["labels"] != -100
    assert torch.equal(masked.sum(1), (b["labels"] != -100).sum(1))    # as many as the uniform ratio drew
    assert (masked <= valid).all() and (g["tgt_in"][masked] == cfg.mask_id).all()
    assert (g["labels"][masked] == ref[masked]).all()
    shown = valid & ~masked   # (the untrained model's own prediction may be <mask> itself, as in decoding)
    assert (g["tgt_in"][shown] == pred[shown]).all() and (g["tgt_in"][shown] != ref[shown]).any()
    for r in range(len(ref)):                                           # every masked one is below every shown one
        if shown[r].any():
            assert conf[r][masked[r]].max() <= conf[r][shown[r]].min()
    same = predicted_context(model, b, cfg, gen, share=0.0)
    assert torch.equal(same["tgt_in"], b["tgt_in"]) and torch.equal(same["labels"], b["labels"])
    args = build_parser().parse_args(["train", "--objective", "gmlm", "--out", "x", "--predicted-context", "0.5",
                                      "--glancing-ratio", "0.5"])
    with pytest.raises(ValueError, match="--predicted-context"):
        args.func(args)


def test_glancing_options_are_checked():
    for extra in (["--glancing-ratio", "1.5"], ["--glancing-share", "-0.1"]):
        args = build_parser().parse_args(["train", "--objective", "gmlm", "--out", "x", *extra])
        with pytest.raises(ValueError, match="--glancing"):
            args.func(args)
    args = build_parser().parse_args(["train", "--objective", "ar", "--out", "x", "--glancing-ratio", "0.5"])
    with pytest.raises(ValueError, match="--glancing-ratio applies to --objective gmlm"):
        args.func(args)


def test_correction_shows_the_models_predictions_at_part_of_the_masked_positions_and_trains_every_position():
    from gmlm_engine.pytorch.train import correction

    model, cfg, gen, b, _ = _untrained_first_pass()
    valid, ref, noised = b["tgt_mask"], b["target"], b["labels"] != -100
    with torch.no_grad():
        h = model.decode(b["tgt_in"], valid, model.encode(b["src"], b["src_mask"]), b["src_mask"])
        logp = torch.log_softmax(model.vocab_logits(h), -1)
    conf, pred = logp.max(-1)
    g = correction(model, b, cfg, gen, share=1.0)
    assert torch.equal(g["labels"] != -100, valid)                     # the loss covers every position
    assert (g["labels"][valid] == ref[valid]).all()
    # (the untrained model may predict <mask> itself: rows where it does are left out of the checks below)
    clear = ~((pred == cfg.mask_id) & noised).any(1)
    assert clear.sum() > 10
    still = g["tgt_in"] == cfg.mask_id
    shown = noised & ~still                                            # the model's own tokens, errors included
    assert (still <= noised).all() and (still.sum(1) < noised.sum(1))[clear].all()
    assert (g["tgt_in"][shown] == pred[shown]).all() and (g["tgt_in"][shown] != ref[shown]).any()
    kept = valid & ~noised
    assert (g["tgt_in"][kept] == ref[kept]).all()                      # the rest: the reference
    for r in clear.nonzero().squeeze(1).tolist():                      # re-masked: the least confident
        if still[r].any() and shown[r].any():
            assert conf[r][still[r]].max() <= conf[r][shown[r]].min()
    assert not g["plain"].any()
    same = correction(model, b, cfg, gen, share=0.0)
    assert torch.equal(same["tgt_in"], b["tgt_in"]) and torch.equal(same["labels"], b["labels"])
    assert torch.equal(same["plain"], noised)


def test_multistep_teacher_decodes_two_passes_and_the_loss_pulls_towards_it():
    from gmlm_engine.pytorch.train import compute_loss, teacher_two_passes

    model, cfg, gen, b, _ = _untrained_first_pass()
    t = teacher_two_passes(model, b, cfg)
    assert t.shape == (*b["target"].shape, cfg.vocab_size) and torch.allclose(t.exp().sum(-1), torch.ones(()))
    # the model is its own teacher: its second pass sees half the masks filled, so the KL term is positive, and a
    # teacher far from the model costs more
    base, _, _ = compute_loss(model, b, 0.0, 0.0)
    with_kl, _, _ = compute_loss(model, b, 0.0, 0.0, t, 1.0)
    assert with_kl > base
    far = torch.log_softmax(torch.randn_like(t) * 5, -1)
    assert compute_loss(model, b, 0.0, 0.0, far, 1.0)[0] > with_kl
    for extra in (["--multistep", "1"], ["--multistep", "-1", "--init-from", "x"]):
        args = build_parser().parse_args(["train", "--objective", "gmlm", "--out", "x", *extra])
        with pytest.raises(ValueError, match="--multistep"):
            args.func(args)


def _collapse(path, blank=0):
    return [t for j, t in enumerate(path) if t != blank and (j == 0 or t != path[j - 1])]


def test_ctc_alignment_is_the_most_probable_path_that_collapses_to_the_target():
    import itertools

    from gmlm_engine.pytorch.train import ctc_alignment

    gen = torch.Generator().manual_seed(0)
    V = 4
    for _ in range(60):
        U = int(torch.randint(2, 7, (1,), generator=gen))
        L = int(torch.randint(1, 4, (1,), generator=gen))
        y = torch.randint(1, V, (1, L), generator=gen)
        logp = torch.log_softmax(torch.randn(1, U + 2, V, generator=gen), -1)
        valid = torch.arange(U + 2)[None] < U                       # two padding positions past the canvas
        got = ctc_alignment(logp, valid, y, torch.tensor([L]), blank=0)[0]
        assert (got[U:] == -1).all()
        paths = [p for p in itertools.product(range(V), repeat=U) if _collapse(p) == y[0].tolist()]
        if not paths:                                               # the canvas cannot hold it: nothing aligned
            assert (got == -1).all()
            continue
        score = lambda p: sum(float(logp[0, u, t]) for u, t in enumerate(p))  # noqa: E731
        assert _collapse(got[:U].tolist()) == y[0].tolist()
        assert score(got[:U].tolist()) == pytest.approx(max(score(p) for p in paths), abs=1e-5)


def test_ctc_batches_and_glancing_reveal_aligned_tokens_in_proportion_to_the_errors():
    from gmlm_engine.pytorch.model import T5Model
    from gmlm_engine.pytorch.train import canvas_lengths, ctc_alignment, ctc_glance, ctc_loss

    tok = Tokenizer(TINY_GMLM / "spm.model")
    cfg = ModelConfig(objective="ctc", vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                      num_encoder_layers=1, num_decoder_layers=1, max_source_len=32, max_target_len=40,
                      mask_id=tok.mask_id, len_id=tok.len_id, ctc_upsample=2).validate()
    src = ["A man rides a bike.", "Two dogs play in the snow near a tree."] * 8
    tgt = ["Ein Mann fährt Rad.", "Zwei Hunde spielen im Schnee."] * 8
    ex = Examples(tok, cfg, src, tgt)
    assert all(s[0] != cfg.len_id for s in ex.src)                  # no <len>: a ctc model has no length head
    b = make_batch(ex, list(range(len(ex))), cfg, torch.Generator().manual_seed(0))
    U = canvas_lengths(b["src_mask"], cfg)
    assert torch.equal(b["tgt_mask"].sum(1), torch.clamp(2 * b["src_mask"].sum(1), max=40)) and torch.equal(U, b["tgt_mask"].sum(1))
    assert ((b["tgt_in"] == cfg.mask_id) == b["tgt_mask"]).all()
    torch.manual_seed(0)
    model = T5Model(cfg)
    loss, total, n = ctc_loss(model, b)
    assert loss.item() > 0 and n == int(b["target_lengths"].sum()) and total > 0
    model.eval()
    gen = torch.Generator().manual_seed(1)
    none = ctc_glance(model, b, cfg, gen, 0.0, share=1.0)
    assert torch.equal(none["tgt_in"], b["tgt_in"])
    g = ctc_glance(model, b, cfg, gen, 1.0, share=1.0)
    with torch.no_grad():
        enc = model.encode(b["src"], b["src_mask"])
        logp = torch.log_softmax(model.vocab_logits(model.decode(b["tgt_in"], b["tgt_mask"], enc, b["src_mask"])), -1)
    align = ctc_alignment(logp, b["tgt_mask"], b["target"], b["target_lengths"], cfg.pad_id)
    shown = g["tgt_in"] != b["tgt_in"]
    wrong = ((logp.argmax(-1) != align) & (align >= 0)).sum(1)
    assert torch.equal((g["tgt_in"] != cfg.mask_id).logical_and(b["tgt_mask"]).sum(1), wrong)   # ratio 1: every error
    assert (g["tgt_in"][shown] == align[shown]).all()


def test_repeat_fallback_trains_on_the_reference_where_only_the_target_repeats_itself():
    from gmlm_engine.pytorch.train import repeat_fallback

    targets = ["Ein Mann im Park im Park.", "Ein Mann in einem Hemd und in einem Hut.",
               "Kinder spielen Fußball in einem Park Fußball.", "Ein Hund rennt."]
    refs = ["Ein Mann in einem Park.", "Ein Mann in einem roten Hemd und in einem Hut.", "Kinder spielen Fußball.",
            "Ein Hund läuft."]
    out, n = repeat_fallback(targets, refs)
    # the first and third repeat themselves and their references do not; the second's reference repeats too
    assert out == [refs[0], targets[1], refs[2], targets[3]] and n == 2
    args = build_parser().parse_args(["train", "--objective", "ctc", "--out", "x", "--repeat-fallback"])
    with pytest.raises(ValueError, match="--repeat-fallback applies with --train-target"):
        args.func(args)
