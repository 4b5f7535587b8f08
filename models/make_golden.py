"""Write tests/data/shipped_golden.json: the shipped models' translations of a few fixed sentences.

Run after replacing a model in models/ (the outputs come from the PyTorch reference decoder, the
executable spec; tests/test_shipped_models.py checks the engine and the reference against them):

    python models/make_golden.py
"""
import json
from pathlib import Path

from gmlm_engine.options import DEFAULT_ITERATIONS, DEFAULT_LENGTH_BEAM
from gmlm_engine.pytorch.reference import ReferenceTranslator

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "A man in an orange hat starring at something.",
    "Two young children are playing in the sand.",
    "A woman is riding a bike down the street.",
    "A group of people stand in front of an igloo.",
    "A black dog runs through the grass.",
    "People are walking.",
]
# the first: the Translator's defaults (tests/test_shipped_models.py checks the CLI's default output against it)
GMLM_OPTIONS = [dict(iterations=DEFAULT_ITERATIONS, length_beam=DEFAULT_LENGTH_BEAM),
                dict(iterations=4, length_beam=3), dict(iterations=10, length_beam=5)]


# ctc-en-de: its defaults first (no options), then more passes
CTC_OPTIONS = [{}, dict(iterations=4)]


def main():
    gmlm = ReferenceTranslator(ROOT / "models" / "gmlm-en-de")
    ar = ReferenceTranslator(ROOT / "models" / "ar-en-de")
    golden = {"sentences": SENTENCES,
              "gmlm": [{"options": o, "outputs": [r.text for r in gmlm.translate_batch(SENTENCES, **o)]}
                       for o in GMLM_OPTIONS],
              "ar_greedy": [r.text for r in ar.translate_batch(SENTENCES, beam_size=1)],
              "ar_beam4": [r.text for r in ar.translate_batch(SENTENCES, beam_size=4)]}
    ctc = ReferenceTranslator(ROOT / "models" / "ctc-en-de")
    golden["ctc"] = [{"options": o, "outputs": [r.text for r in ctc.translate_batch(SENTENCES, **o)]}
                     for o in CTC_OPTIONS]
    out = ROOT / "tests" / "data" / "shipped_golden.json"
    out.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
