import gzip

import pytest

from gmlm_engine.data import data_dir, load_split, read_lines, read_parallel, token_batches


def test_read_plain_and_gz(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("eins\nzwei\n")
    assert read_parallel(tmp_path / "a.txt", tmp_path / "b.txt.gz") == (["one", "two"], ["eins", "zwei"])
    (tmp_path / "c.txt").write_text("x\n")
    with pytest.raises(ValueError, match="not aligned"):
        read_parallel(tmp_path / "a.txt", tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError):
        read_lines(tmp_path / "missing.txt")


def test_data_dir_needs_a_path(monkeypatch):
    monkeypatch.delenv("GMLM_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="GMLM_DATA_DIR"):
        data_dir(None)


def test_multi30k_splits(multi30k):
    src, tgt = load_split(multi30k, "test2016")
    assert len(src) == len(tgt) == 1000
    assert len(load_split(multi30k, "val")[0]) == 1014


def test_token_batches_respect_budget_and_cover_everything():
    lengths = [(i * 7) % 40 + 1 for i in range(500)]
    batches = token_batches(lengths, 200, shuffle=True, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 200
    # bucketing: padding waste is small compared with random batching
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert waste < 0.15 * sum(lengths)
    assert token_batches(lengths, 200, shuffle=True, seed=3) == batches


def test_tokenizer_decodes_out_of_vocabulary_ids_as_unknown():
    from conftest import TINY_GMLM
    from gmlm_engine.tokenizer import Tokenizer

    tok = Tokenizer(TINY_GMLM / "spm.model")
    ids = tok.encode(["A man."])[0]
    assert tok.decode(ids + [tok.vocab_size + 7]) == tok.decode(ids + [tok.unk_id])
    assert tok.pieces([tok.vocab_size, -1]) == tok.pieces([tok.unk_id, tok.unk_id])


def test_tokenizer_encodes_each_text_and_decodes_a_bare_word_boundary_as_one_space():
    from conftest import TINY_GMLM
    from gmlm_engine.tokenizer import Tokenizer

    tok = Tokenizer(TINY_GMLM / "spm.model")
    texts = ["A man.", "", "Two dogs play in the snow."]
    assert tok.encode(texts) == [tok.sp.Encode(t, out_type=int) for t in texts]
    man, dogs = tok.encode(["A man."])[0], tok.encode(["dogs"])[0]
    bare = tok.sp.PieceToId("\u2581")
    assert tok.sp.IdToPiece(bare) == "\u2581"
    # "▁A ▁man . ▁ ▁dogs": SentencePiece writes two spaces before "dogs"; the output has one
    assert "  " in tok.sp.Decode(man + [bare] + dogs)
    assert tok.decode(man + [bare] + dogs) == "A man. dogs"
    assert tok.decode([bare] + man + [bare]) == "A man."
