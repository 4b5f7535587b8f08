"""`gmlm eval`: sacreBLEU (detokenized, cased, 13a) and chrF of a model on a split or files."""
from __future__ import annotations

import json
import sys
import time


def repeats(text: str) -> bool:
    """Whether an output repeats itself: a word bigram that occurs twice, or a word of 5 or more letters
    that occurs twice (words: runs of letters and digits, lower-cased). The GMLM's characteristic error
    ("... in einem Park Fußball.") and AR's rare-word loops both count; references do it rarely."""
    import re
    from collections import Counter

    words = re.findall(r"\w+", text.lower())
    bigrams = Counter(zip(words, words[1:]))
    long = Counter(w for w in words if len(w) >= 5)
    return any(n >= 2 for n in bigrams.values()) or any(n >= 2 for n in long.values())


def repetition_rate(hyp: list[str]) -> float:
    """Percent of outputs that repeat themselves (see `repeats`)."""
    return round(100.0 * sum(repeats(h) for h in hyp) / max(len(hyp), 1), 1)


# Words a sentence does not end on: articles and prepositions (lower case) of the target languages Multi30k has.
DANGLING = {
    "de": set("der die das den dem des ein eine einen einem einer eines im in am an auf aus bei beim mit nach von vom "
              "zu zum zur für über unter vor hinter neben zwischen durch gegen ohne um".split()),
    "en": set("a an the of in on at by with from to into onto for over under behind between through".split()),
    "fr": set("le la les un une des du de au aux à dans sur sous avec pour par entre vers".split()),
}


def defects(text: str, lang: str = "de") -> list[str]:
    """The defects of an output that any reader sees, beside `repeats`: "stem", two adjacent words that share
    their first 4 or more letters ("Hauss Hauses", "Park Park": a stutter), and "dangling", a sentence that
    ends on an article or preposition of `lang` ("... tanzt auf der."; languages without a list: not tested)."""
    import re

    words = re.findall(r"[^\W\d_]+", text.lower())
    found = []
    if any(len(a) >= 4 and len(b) >= 4 and a[:4] == b[:4] for a, b in zip(words, words[1:])):
        found.append("stem")
    if words and words[-1] in DANGLING.get(lang, ()):
        found.append("dangling")
    return found


def defect_rate(hyp: list[str], lang: str = "de") -> float:
    """Percent of outputs with a visible defect (see `defects`)."""
    return round(100.0 * sum(bool(defects(h, lang)) for h in hyp) / max(len(hyp), 1), 1)


def score(hyp: list[str], ref: list[str], lang: str = "de") -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyp) != len(ref):
        raise ValueError(f"{len(hyp)} hypotheses for {len(ref)} references")
    bleu, chrf = BLEU(tokenize="13a"), CHRF()
    b = bleu.corpus_score(hyp, [ref])
    return {"bleu": round(b.score, 2), "chrf": round(chrf.corpus_score(hyp, [ref]).score, 2),
            "len_ratio": round(b.sys_len / max(b.ref_len, 1), 3),    # < 1: BLEU's brevity penalty applies
            "repetition": repetition_rate(hyp),                       # percent of outputs that repeat themselves
            "defects": defect_rate(hyp, lang),                        # percent with a stem stutter or a dangling end
            "bleu_signature": str(bleu.get_signature())}


def format_table(rows: list[dict], cols: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "| " + " | ".join(x.ljust(n) for x, n in zip(xs, w)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (n + 2) for n in w) + "|"] + [line(x) for x in cells])


def run(args, translator, options: dict) -> int:
    from ..data import load_split, read_parallel

    if args.src or args.ref:
        if not (args.src and args.ref):
            raise ValueError("--src and --ref go together")
        src, ref = read_parallel(args.src, args.ref)
        name = args.src
    else:
        src, ref = load_split(args.data_dir, args.split, args.src_lang, args.tgt_lang)
        name = args.split
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0 (0: every sentence), got {args.limit}")
    if args.limit:
        src, ref = src[:args.limit], ref[:args.limit]
    if not src:
        raise ValueError(f"{name}: no sentences to evaluate")
    t0 = time.perf_counter()
    hyp = [r.text for r in translator.translate_batch(src, **options)]
    secs = time.perf_counter() - t0
    row = {"model": str(args.model), "engine": args.engine, "data": name, "sentences": len(src),
           **score(hyp, ref, args.tgt_lang), "seconds": round(secs, 2), "sent/s": round(len(src) / secs, 1),
           "options": options}
    print(format_table([row], ["model", "engine", "data", "sentences", "bleu", "chrf", "repetition", "defects", "sent/s"]))
    print(f"sacreBLEU: {row['bleu_signature']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("\n".join(hyp) + "\n")
    return 0
