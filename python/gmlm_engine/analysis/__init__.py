"""The theory and error modes of "Promises and Pitfalls of Generative Masked Language Modeling"
(Li et al., ICML 2024), made runnable (docs/analysis.md).

- ``distributions``: enumerable joint distributions with exact conditionals (Ising chains and grids,
  "all tokens equal", random MRFs, a toy multi-modal translation table);
- ``chains``: exact transition matrices of Glauber, k-block and product-form (parallel) dynamics,
  mask-predict decoding from the all-mask state, and TV / stationary law / spectral gap / mixing time;
- ``estimation``: the k-masked pseudo-likelihood estimator of an Ising model and its exact asymptotics;
- ``diagnostics``: stutter, repeated n-gram, length and per-pass change counts on token lists;
- ``experiments``, ``translations``, ``report``, ``cli``: ``gmlm analyze``.

numpy only; PyTorch is imported by the part-3 driver (``translations``) and matplotlib by ``report``,
both lazily.
"""
from .chains import (all_blocks, block_dynamics, block_kernel, contiguous_blocks, distribution_after, glauber,
                     is_reversible, is_row_stochastic, mask_predict, mixing_time, product_form, spectral_gap,
                     stationary, tv, tv_curve, unmask_schedule)
from .diagnostics import (changed_per_pass, length_error_summary, length_errors, per_pass_rate,
                          repeated_ngram_count, repeated_ngram_rate, still_changing, stutter_count, stutter_rate,
                          summarize)
from .distributions import (Joint, all_equal, chain_edges, grid_edges, ising, ising_chain, ising_grid, random_mrf,
                            toy_translation_table, translation_entry)
from .estimation import IsingFamily, asymptotic_mse, fit_masked_pl, masked_pl, sample_empirical

__all__ = [
    "Joint", "all_equal", "chain_edges", "grid_edges", "ising", "ising_chain", "ising_grid", "random_mrf",
    "toy_translation_table", "translation_entry",
    "all_blocks", "block_dynamics", "block_kernel", "contiguous_blocks", "distribution_after", "glauber",
    "is_reversible", "is_row_stochastic", "mask_predict", "mixing_time", "product_form", "spectral_gap",
    "stationary", "tv", "tv_curve", "unmask_schedule",
    "IsingFamily", "asymptotic_mse", "fit_masked_pl", "masked_pl", "sample_empirical",
    "changed_per_pass", "length_error_summary", "length_errors", "per_pass_rate", "repeated_ngram_count",
    "repeated_ngram_rate", "still_changing", "stutter_count", "stutter_rate", "summarize",
]
