"""The joint SentencePiece vocabulary: pad=0, eos=1, unk=2, <mask>=3, <len>=4."""
from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path

import sentencepiece as spm

SPECIAL = {"pad": 0, "eos": 1, "unk": 2, "mask": 3, "len": 4}
NUM_SPECIAL = 5  # ids below this are never produced as "content" by random init


class Tokenizer:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.sp = spm.SentencePieceProcessor()
        try:
            ok = self.sp.Load(self.path)
        except (OSError, RuntimeError) as e:
            from .config import ModelError

            raise ModelError(f"{self.path}: cannot load SentencePiece model ({e})") from None
        if not ok:  # pragma: no cover - Load raises in current versions
            from .config import ModelError

            raise ModelError(f"{self.path}: cannot load SentencePiece model")
        self.vocab_size = self.sp.GetPieceSize()
        self.pad_id, self.eos_id, self.unk_id = self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id()
        self.mask_id = self.sp.PieceToId("<mask>")
        self.len_id = self.sp.PieceToId("<len>")
        # Pieces that carry content: a letter, digit or symbol (Unicode categories L*, N*, S*) once the
        # word-boundary mark is removed; not <unk>, not the special ids, not bare punctuation.
        specials = {self.pad_id, self.eos_id, self.unk_id, self.mask_id, self.len_id}
        self._word_pieces: list[bool] | None = None
        self._content = [i not in specials and _has_content(self.sp.IdToPiece(i).replace("\u2581", ""))
                         for i in range(self.vocab_size)]

    def encode(self, texts: list[str]) -> list[list[int]]:
        # one call per text: SentencePiece's list form starts a thread pool per call (40-180 us measured, up to a
        # third of the engine's whole pass for one short sentence); a text takes about 3 us
        return [self.sp.Encode(t, out_type=int) for t in texts]

    def translatable(self, ids: list[int]) -> bool:
        """Whether encoded text has anything to translate: at least one piece with a letter, digit or
        symbol that this vocabulary knows. Input made only of whitespace, control or zero-width
        characters, punctuation, or characters the vocabulary lacks (emoji, unknown scripts: <unk>)
        has none; it translates to "" rather than to a sentence the model invents."""
        return any(self._content[i] for i in ids if 0 <= i < self.vocab_size)

    def _known(self, ids) -> list[int]:
        # A model whose output layer is wider than this vocabulary can emit ids SentencePiece does
        # not know; they decode as <unk> instead of raising from inside sentencepiece.
        n = self.vocab_size
        return [int(i) if 0 <= int(i) < n else self.unk_id for i in ids]

    def decode(self, ids: list[int]) -> str:
        # one space between words: a parallel decoder can write a bare word-boundary piece ("▁") between two
        # words, which SentencePiece decodes as a double space (1.5 % of the ctc model's val outputs)
        return " ".join(self.sp.Decode(self._known(ids)).split())

    def word_pieces(self) -> list[bool]:
        """Per id: a piece that starts a word with 3 or more letters (repeat_remask's word pieces)."""
        if self._word_pieces is None:
            self._word_pieces = [p.startswith("\u2581") and len(p) >= 4 and p[1:].isalpha()
                                 for p in (self.sp.IdToPiece(i) for i in range(self.vocab_size))]
        return self._word_pieces

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.IdToPiece(i) for i in self._known(ids)]


def _has_content(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LNS" for ch in unicodedata.normalize("NFKC", text))


def load_model_tokenizer(files) -> Tokenizer:
    """A model directory's spm.model, checked against its config.json: the same vocabulary size and the
    same special ids (a vocabulary that does not match the embedding decodes to garbage)."""
    from .config import SPECIAL_ID_FIELDS, ModelError

    tok = Tokenizer(files.spm_path)
    cfg = files.config
    if tok.vocab_size != cfg.vocab_size:
        raise ModelError(f"{files.spm_path}: vocabulary of {tok.vocab_size} pieces, but config.json's "
                         f"vocab_size is {cfg.vocab_size} (the tokenizer does not belong to these weights)")
    for name in SPECIAL_ID_FIELDS:
        if getattr(tok, name) != getattr(cfg, name):
            raise ModelError(f"{files.spm_path}: {name} is {getattr(tok, name)} in the tokenizer but "
                             f"{getattr(cfg, name)} in config.json")
    return tok


def train_spm(texts_files: list[str | os.PathLike], model_path: str | os.PathLike, vocab_size: int = 8000,
              seed_sentences: int = 2_000_000) -> Tokenizer:
    """Train a joint SentencePiece (unigram) model on plain-text or .gz files; writes model_path."""
    from .data import read_lines

    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        with open(corpus, "w", encoding="utf-8") as f:
            for p in texts_files:
                for line in read_lines(p):
                    f.write(line + "\n")
        prefix = Path(tmp) / "spm"
        spm.SentencePieceTrainer.Train(
            input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type="unigram",
            character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            user_defined_symbols=["<mask>", "<len>"], num_threads=1, minloglevel=2)  # 1 thread: reproducible
        (Path(tmp) / "spm.model").replace(model_path)
    tok = Tokenizer(model_path)
    assert tok.mask_id == SPECIAL["mask"] and tok.len_id == SPECIAL["len"], "unexpected special ids"
    return tok
