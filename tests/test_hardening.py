"""The black-box probes of the engine's surface, kept: each test failed before its fix (crashes, hangs, invented sentences,
destroyed outputs, unclear errors). The server's items are in test_serving.py."""
import json
import os
import stat
import subprocess
import sys
import threading
import unicodedata
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gmlm_engine import Translator
from gmlm_engine.tools.cli import main
from gmlm_engine.textio import AtomicOutput
from gmlm_engine.config import ModelError, read_model_dir
from conftest import TINY_GMLM, copy_without_weights_checksum


@pytest.fixture(scope="module")
def tr():
    return Translator(TINY_GMLM, intra_threads=2, compute_type="float32")


# --- 1. live_rows read while the scheduler runs (a segfault before: an unlocked walk of the batch) ----
def test_scheduler_counters_can_be_read_while_it_runs(tr):
    from gmlm_engine.serving import Scheduler

    s = Scheduler(tr)
    stop, seen = threading.Event(), []

    def read():
        while not stop.is_set():
            seen.append((s.live_rows, s._batch.requests))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    texts = ["A man rides a bike.", "Two dogs play in the snow."]
    want = [r.text for r in tr.translate_batch(texts)]
    got = []
    workers = [threading.Thread(target=lambda: got.extend([[r.text for r in s.submit(texts).result()]
                                                           for _ in range(15)])) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    reader.join()
    s.close()
    assert got == [want] * 60
    assert len(seen) > 100 and all(rows >= 0 and reqs >= 0 for rows, reqs in seen)
    assert any(rows > 0 for rows, _ in seen)          # it did read a running batch


# --- 2 and 10. intra_threads: bounded, and a pool that cannot start is an error, not a hang ---------
def test_intra_threads_is_bounded_with_a_short_message():
    from gmlm_engine import _core

    hi = _core.build_info()["max_intra_threads"]
    assert hi == 4 * len(os.sched_getaffinity(0))
    for bad in (hi + 1, 2**31, 2**64, -1, 1.5, True, None):
        with pytest.raises(ValueError, match=r"intra_threads must be an integer in \[0, ") as e:
            Translator(TINY_GMLM, intra_threads=bad)
        assert len(str(e.value)) < 200
    assert Translator(TINY_GMLM, intra_threads=hi).intra_threads == hi


def test_thread_start_failure_is_an_error_not_a_hang():
    # A huge stack size per thread under a small address-space limit: the second thread cannot start.
    code = ("from gmlm_engine import Translator\n"
            f"try:\n    Translator({str(TINY_GMLM)!r}, intra_threads=4, compute_type='float32')\n"
            "except RuntimeError as e:\n    print('ERROR', e)\nelse:\n    print('STARTED')\n")
    p = subprocess.run(["bash", "-c", f"ulimit -s 1500000 && ulimit -v 5000000 && exec {sys.executable} -c \"$0\"",
                        code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout.strip()
    if out == "STARTED":   # this machine let 4 such threads start: nothing to check
        pytest.skip("the address-space limit did not stop a thread here")
    assert out.startswith("ERROR intra_threads: could not start thread"), out


def test_model_must_be_a_path():
    for bad in (None, 3, b"default", ["models"]):
        with pytest.raises(ValueError, match="model must be a model directory"):
            Translator(bad)


# --- 3. input with nothing to translate gives "", never an invented sentence -----------------------
NOTHING = ["\u200d", "\x00", "\u2060", "\u00ad", "\ufeff", "\u200b\u200c", "\x07\x1b", " \t ", "...", "?!", "«»",
           "\u0301", "😀", "🐶🐱", "ไทย", "Привет мир", "\U000e0041"]


def test_nothing_translatable_gives_empty_text(tr):
    res = tr.translate_batch(NOTHING + ["A man rides a bike."])
    assert [r.text for r in res[:-1]] == [""] * len(NOTHING)
    assert all(r.tokens == [] and r.iterations == 0 for r in res[:-1])
    assert res[-1].text != ""


def test_nothing_translatable_through_the_scheduler(tr):
    from gmlm_engine.serving import Scheduler

    s = Scheduler(tr)
    try:
        assert [r.text for r in s.submit(NOTHING).result(60)] == [""] * len(NOTHING)
    finally:
        s.close()


_NO_CONTENT = st.characters(whitelist_categories=("Cc", "Cf", "Zs", "Zl", "Zp", "Pd", "Ps", "Pe", "Po", "Mn"))


@settings(max_examples=60, deadline=None)
@given(st.text(_NO_CONTENT, min_size=1, max_size=12))
def test_no_letter_digit_or_symbol_gives_empty_text(tr, text):
    assert not any(unicodedata.category(c)[0] in "LNS" for c in unicodedata.normalize("NFKC", text))
    assert tr.translate_batch([text])[0].text == ""


# --- 4-7. the output path ---------------------------------------------------------------------------
def _src(tmp_path, lines=("A man.", "A dog runs.")):
    p = tmp_path / "in.txt"
    p.write_text("".join(x + "\n" for x in lines))
    return p


def test_output_fifo_is_written_through_not_replaced(tr, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    tr.translate_file(_src(tmp_path), fifo)
    reader.join(30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got and len(got[0].splitlines()) == 2


def test_output_symlink_keeps_pointing_at_its_file(tr, tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    tr.translate_file(_src(tmp_path), link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(target.read_text().splitlines()) == 2
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640      # the file keeps its mode


def test_read_only_output_is_refused(tr, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("keep me\n")
    os.chmod(out, 0o444)
    with pytest.raises(PermissionError, match="read-only"):
        tr.translate_file(_src(tmp_path), out)
    assert out.read_text() == "keep me\n"


def test_two_writers_never_share_a_temporary_file(tmp_path):
    out = tmp_path / "out.txt"
    a, b = AtomicOutput(out), AtomicOutput(out)
    with a as fa:
        fa.write("a1\n")
        with b as fb:
            fb.write("b1\nb2\n")
        assert out.read_text() == "b1\nb2\n"
        fa.write("a2\n")
    assert out.read_text() == "a1\na2\n"                     # whole, from one writer
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]        # no temporary file left


def test_output_that_is_the_input_is_refused(tr, tmp_path):
    src = _src(tmp_path)
    before = src.read_text()
    alias = tmp_path / "alias.txt"
    alias.symlink_to(src)
    for out in (src, tmp_path / "." / "in.txt", alias):
        with pytest.raises(ValueError, match="is the input file"):
            tr.translate_file(src, out)
    assert main(["translate", "--model", str(TINY_GMLM), "-i", str(src), "-o", str(alias)]) == 2
    assert src.read_text() == before


def test_output_directory_is_refused_before_any_work(tr, tmp_path, monkeypatch):
    d = tmp_path / "outdir"
    d.mkdir()
    monkeypatch.setattr(type(tr), "_decode", lambda *a, **k: pytest.fail("translated before checking the output"))
    with pytest.raises(IsADirectoryError):
        tr.translate_file(_src(tmp_path), d)
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "outdir"] and not os.listdir(d)


# --- 8. model directories -----------------------------------------------------------------------------
def _copy(tmp_path):
    return copy_without_weights_checksum(TINY_GMLM, tmp_path / "m")


def test_model_written_with_a_tokenizer_checksum(tmp_path):
    from gmlm_engine.pytorch.export import pack_model

    out = pack_model(TINY_GMLM, tmp_path / "packed")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tokenizer_sha256"] == json.loads((TINY_GMLM / "config.json").read_text())["tokenizer_sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_model_dir(out)                                    # checked, no warning


def test_directory_without_checksum_loads_with_a_warning(tmp_path):
    d = _copy(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    del cfg["tokenizer_sha256"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="no tokenizer_sha256"):
        tr = Translator(d, compute_type="float32")
    assert tr.translate_batch(["A man."])[0].text == Translator(TINY_GMLM, compute_type="float32").translate_batch(
        ["A man."])[0].text


def test_bfloat16_weights_load(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    d = _copy(tmp_path)
    w = load_file(str(d / "model.safetensors"))
    save_file({k: torch.from_numpy(v.astype(np.float32)).bfloat16() for k, v in w.items()}, str(d / "model.safetensors"))
    from gmlm_engine.config import load_weights_numpy

    got = load_weights_numpy(read_model_dir(d))
    for k, v in w.items():
        want = torch.from_numpy(v.astype(np.float32)).bfloat16().float().numpy()
        np.testing.assert_array_equal(got[k], want)
    assert Translator(d, compute_type="float32").translate_batch(["A man rides a bike."])[0].text


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "spm.model"])
def test_unreadable_file_is_a_model_error_not_missing(tmp_path, monkeypatch, name):
    from pathlib import Path

    d = _copy(tmp_path)
    victim = d / name
    real_stat, real_read = Path.stat, Path.read_bytes

    def deny(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", lambda self: deny(self) if self == victim else real_read(self))
    with pytest.raises(ModelError, match=f"{name}: permission denied"):
        Translator(d, compute_type="float32").translate_batch(["A man."])
    monkeypatch.setattr(Path, "stat", lambda self, **k: deny(self) if self == victim else real_stat(self, **k))
    with pytest.raises(ModelError, match=f"{name}: permission denied") as e:
        read_model_dir(d)
    assert "missing" not in str(e.value)


# --- 9. error positions in the caller's input ---------------------------------------------------------
def test_iterable_error_names_the_position_in_the_stream(tr):
    lines = ["A man."] * 100 + [None] + ["A dog."] * 10
    with pytest.raises(ValueError, match=r"source\[100\] must be a string"):
        list(tr.translate_iterable(lines, batch_size=64))


def test_ray_error_names_the_row():
    from gmlm_engine.serving.ray import name_row

    batch = {"path": np.array(["a.txt", "b.txt"]), "line": np.array([7, 101]), "text": np.array(["x", None])}
    assert name_row("source[1] must be a string, got NoneType", batch, "text") == \
        "'text' of b.txt line 101 must be a string, got NoneType"
    batch = {"id": np.array([41, 42]), "text": np.array(["x", None])}
    assert "id=42" in name_row("source[1] must be a string", batch, "text")


# --- 11. gmlm serve's arguments -----------------------------------------------------------------------
@pytest.mark.parametrize("args, what", [(["--port", "99999"], "--port"), (["--log-level", "nope"], "--log-level"),
                                        (["--max-texts", "0"], "--max-texts"), (["--mode", "fast"], "--mode")])
def test_serve_argument_errors_are_one_line_and_status_2(capsys, args, what):
    with pytest.raises(SystemExit) as e:
        main(["serve", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert what in err and "Traceback" not in err


# --- every entry checks its options: the public resumable batch and the AR call, like translate_batch ----
def test_the_resumable_batch_and_the_ar_call_check_every_option(tr):
    """`new_batch().add` and `translate_ar` are public: a value of the wrong type or out of range is a
    ValueError naming the option, never pybind11's cast error, a request that never finishes
    (iterations 2^62) or a MemoryError (beam_size 100000 allocated its cache before the check)."""
    from conftest import TINY_AR

    batch = tr.new_batch()
    bad = [({"iterations": 2**62}, "iterations"), ({"iterations": 2**70}, "iterations"),
           ({"iterations": "x"}, "iterations"), ({"iterations": 2.5}, "iterations"), ({"iterations": True}, "iterations"),
           ({"seed": -1}, "seed"), ({"stutter_remask": 1}, "stutter_remask"), ({"repeat_penalty": "0.1"}, "repeat_penalty"),
           ({"remask": 3}, "remask"), ({"remask": "threshold", "threshold": "high"}, "threshold"),
           ({"length_beam": None}, "length_beam")]
    for opts, name in bad:
        with pytest.raises(ValueError, match=name):
            batch.add([[10, 1]], [opts])
    assert batch.requests == 0
    ar = Translator(TINY_AR, intra_threads=1, compute_type="float32")
    with pytest.raises(ValueError, match="beam_size"):
        ar._engine.translate_ar([[10, 1]], beam_size=100000)
    ar_batch = ar.new_batch()
    for opts, name in [({"beam_size": "4"}, "beam_size"), ({"beam_size": 10**6}, "beam_size"),
                       ({"length_penalty": "1"}, "length_penalty")]:
        with pytest.raises(ValueError, match=name):
            ar_batch.add([[10, 1]], [opts])
    # and the good options still work on both
    assert batch.add([[10, 1]], [{"iterations": 2, "seed": 3}])
    assert ar_batch.add([[10, 1]], [{"beam_size": 2, "length_penalty": 1}])
