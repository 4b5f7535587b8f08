"""The decoding option sets every parity test shares: the reference against the CPU engine
(test_engine_parity.py, test_engine_ar.py), the engine on cuda against the CPU (test_cuda_engine.py), and
the continuous-batching scheduler (test_serving.py). One list, so that a new option is added once.

iterations 1/4/10, length_beam 1/3/5, linear and threshold, stutter on and off, random init, sampling,
pruning, early_stop, length_offset, repeat_remask, repeat_penalty (on by default: 0.1; off in one set) and cached
refinement (cache_refresh), and update='all' (every position predicted each pass).
"""
REFINE_OPTION_SETS = [
    dict(iterations=1, length_beam=1),
    dict(iterations=4, length_beam=3),
    dict(iterations=4, length_beam=3, repeat_penalty=0.0),
    dict(iterations=4, length_beam=3, stutter_remask=False),
    dict(iterations=10, length_beam=5),
    dict(iterations=10, length_beam=1, stutter_remask=False),
    dict(iterations=1, length_beam=5, stutter_remask=False),
    dict(iterations=4, length_beam=3, remask="threshold", threshold=0.5),
    dict(iterations=10, length_beam=5, remask="threshold", threshold=0.9, stutter_remask=False),
    dict(iterations=4, length_beam=3, init="random", seed=1),
    dict(iterations=4, length_beam=3, sampling=True, seed=2),
    dict(iterations=4, length_beam=5, length_beam_keep=2),
    dict(iterations=10, length_beam=5, length_beam_keep=1, remask="threshold", threshold=0.7, stutter_remask=False),
    dict(iterations=4, length_beam=4, length_beam_keep=3, sampling=True, seed=3),
    dict(iterations=10, length_beam=3, early_stop=True),
    dict(iterations=10, length_beam=5, remask="threshold", threshold=0.9, early_stop=True, stutter_remask=False),
    dict(iterations=4, length_beam=3, length_offset=2),
    dict(iterations=4, length_beam=3, repeat_remask=True),
    dict(iterations=10, length_beam=5, remask="threshold", threshold=0.7, repeat_remask=True, stutter_remask=False),
    dict(iterations=4, length_beam=5, length_beam_keep=2, length_offset=-3, sampling=True, seed=4),
    dict(iterations=4, length_beam=4, repeat_penalty=0.5, repeat_remask=True),
    dict(iterations=4, length_beam=5, length_beam_keep=2, repeat_penalty=100.0, stutter_remask=False),
    dict(iterations=10, length_beam=3, cache_refresh=0),
    dict(iterations=10, length_beam=5, cache_refresh=2, remask="threshold", threshold=0.7, stutter_remask=False),
    dict(iterations=6, length_beam=3, cache_refresh=0, init="random", seed=5, sampling=True),
    dict(iterations=10, length_beam=4, length_beam_keep=2, cache_refresh=3, repeat_remask=True, early_stop=True),
    dict(iterations=4, length_beam=3, update="all"),
    dict(iterations=10, length_beam=5, update="all", remask="threshold", threshold=0.7, early_stop=True),
    dict(iterations=4, length_beam=4, length_beam_keep=2, update="all", sampling=True, seed=6, repeat_remask=True),
]

# ctc models (docs/decoding.md, "CTC models"): one canvas per source, no length candidates, no stutter rules;
# repeat_remask (repeats without the blank penalty) on unless a set turns it off.
CTC_OPTION_SETS = [
    dict(),
    dict(iterations=3),
    dict(iterations=4, repeat_penalty=0.0),
    dict(iterations=4, update="all"),
    dict(iterations=4, remask="threshold", threshold=0.7),
    dict(iterations=3, sampling=True, seed=2),
    dict(iterations=3, init="random", seed=1),
    dict(iterations=6, early_stop=True),
    dict(iterations=6, cache_refresh=0),
    dict(iterations=5, cache_refresh=2, remask="threshold", threshold=0.9, early_stop=True),
    dict(blank_penalty=0.0),
    dict(repeat_remask=False),
    dict(iterations=3, remask="threshold", threshold=0.5, blank_penalty=2.0),
    dict(iterations=4, blank_penalty=5.0),
    dict(iterations=3, blank_penalty=3.0, sampling=True, seed=7),
]

# ar models (test_engine_ar.py, test_cuda_engine.py): greedy; beam 2, 4, 5; length penalties 0 to 2.
AR_OPTION_SETS = [dict(beam_size=1), dict(beam_size=4), dict(beam_size=4, length_penalty=2.0),
                  dict(beam_size=2, length_penalty=0.0), dict(beam_size=5, length_penalty=1.5)]


def option_id(opts: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in opts.items())
