"""Part 3 of ``gmlm analyze``: count the predicted error modes on real translations.

A GMLM is decoded through the reference decoder (``gmlm_engine.pytorch.reference.ReferenceTranslator``,
imported lazily: it needs PyTorch) with several iteration counts and re-masking strategies, with its
per-pass history; an AR model of the same size is decoded greedily. Tokens are the models'
SentencePiece pieces; references are tokenised with the same model's tokenizer.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .diagnostics import per_pass_rate, still_changing, stutter_rate, summarize


@dataclass(frozen=True)
class GmlmConfig:
    """One decoding configuration of the GMLM (the reference decoder's option names)."""

    iterations: int
    remask: str = "linear"
    threshold: float | None = None
    stutter_remask: bool = False

    @property
    def label(self) -> str:
        rm = self.remask if self.threshold is None else f"{self.remask} {self.threshold:g}"
        return f"T={self.iterations} {rm}" + (" +stutter-remask" if self.stutter_remask else "")


def default_configs(quick: bool = False) -> list[GmlmConfig]:
    """Iterations x {stutter_remask off, on} with linear re-masking, and threshold re-masking."""
    its = (1, 4) if quick else (1, 2, 4, 10)
    out = [GmlmConfig(T, "linear", None, s) for T in its for s in (False, True)]
    out += [GmlmConfig(its[-1], "threshold", 0.9, s) for s in (False, True)]
    return out


def load_test_set(data_dir, split: str, src_lang: str, tgt_lang: str, num: int) -> tuple[list[str], list[str]]:
    """The first ``num`` sentence pairs of a Multi30k split (``gmlm_engine.data``)."""
    from ..data import read_parallel, split_file

    src, tgt = read_parallel(split_file(data_dir, split, src_lang), split_file(data_dir, split, tgt_lang))
    return src[:num], tgt[:num]


def _reference_tokens(translator, texts: list[str]) -> list[list[str]]:
    tok = translator.tokenizer
    return [tok.pieces(ids) for ids in tok.encode(texts)]


def run_translation_study(sources: list[str], references: list[str], gmlm_model=None, ar_model=None,
                          configs: list[GmlmConfig] | None = None, length_beam: int = 3,
                          progress=None, device: str = "cpu", threads: int = 0) -> dict:
    """Decode ``sources`` with each configuration; return rows of error rates (``summarize``),
    per-pass change counts and per-pass stutter rates (GMLM), and a few example outputs.
    ``threads``: PyTorch CPU threads (0: PyTorch's default)."""
    from ..pytorch.reference import ReferenceTranslator

    if threads:
        import torch

        torch.set_num_threads(threads)
    configs = default_configs() if configs is None else configs
    rows, examples = [], {"source": sources[:3], "reference": references[:3]}
    if gmlm_model is not None:
        tr = ReferenceTranslator(gmlm_model, device=device)
        refs = _reference_tokens(tr, references)
        for cfg in configs:
            t0 = time.perf_counter()
            res = tr.translate_batch(sources, iterations=cfg.iterations, length_beam=length_beam,
                                     remask=cfg.remask, threshold=cfg.threshold,
                                     stutter_remask=cfg.stutter_remask, return_history=True)
            seconds = time.perf_counter() - t0
            hist = [r.history or [] for r in res]
            rows.append({"system": "gmlm", "label": cfg.label, **asdict(cfg), "seconds": seconds,
                         "mean_passes": sum(r.iterations for r in res) / max(len(res), 1),
                         **summarize([r.tokens for r in res], refs),
                         "history": still_changing(hist, cfg.iterations),
                         "stutter_by_pass": per_pass_rate(hist, stutter_rate, cfg.iterations)})
            examples[f"gmlm {cfg.label}"] = [r.text for r in res[:3]]
            if progress:
                progress(f"translations: gmlm {cfg.label} ({seconds:.1f}s)")
    if ar_model is not None:
        tr = ReferenceTranslator(ar_model, device=device)
        refs = _reference_tokens(tr, references)
        t0 = time.perf_counter()
        res = tr.translate_batch(sources, beam_size=1)
        seconds = time.perf_counter() - t0
        rows.append({"system": "ar", "label": "AR greedy", "seconds": seconds,
                     **summarize([r.tokens for r in res], refs)})
        examples["ar greedy"] = [r.text for r in res[:3]]
        if progress:
            progress(f"translations: ar greedy ({seconds:.1f}s)")
    return {"sentences": len(sources), "length_beam": length_beam, "rows": rows, "examples": examples,
            "gmlm_model": None if gmlm_model is None else str(gmlm_model),
            "ar_model": None if ar_model is None else str(ar_model)}
