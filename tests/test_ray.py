"""gmlm_engine.serving.ray on a real local Ray cluster (2 CPUs, loopback, started here): outputs equal to
translate_batch, a worker killed mid-job, bad options, missing and broken models, and
`gmlm translate --ray` over text and jsonl files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from gmlm_engine.tools.cli import main  # noqa: E402
from gmlm_engine.config import ModelError  # noqa: E402
from gmlm_engine.engine import Translator  # noqa: E402
from gmlm_engine.serving.ray import translate_dataset  # noqa: E402

from conftest import TINY_GMLM  # noqa: E402
from test_engine_common import test_sentences  # noqa: E402

N = 400


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sentences():
    return test_sentences(N)


@pytest.fixture(scope="module")
def expected(sentences):
    return [r.text for r in Translator(TINY_GMLM, intra_threads=1).translate_batch(sentences, iterations=3)]


def _by_id(rows):
    return sorted(rows, key=lambda r: r["id"])


def test_outputs_equal_translate_batch(sentences, expected):
    ds = ray.data.from_items([{"id": i, "text": s} for i, s in enumerate(sentences)], override_num_blocks=8)
    rows = _by_id(translate_dataset(ds, model=TINY_GMLM, concurrency=2, batch_size=16, iterations=3).take_all())
    assert [r["id"] for r in rows] == list(range(N))                   # every row once, none invented
    assert [r["translation"] for r in rows] == expected
    assert [r["text"] for r in rows] == sentences                      # input columns are kept


def _worker_pids() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"TranslatorActor" in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process through /proc")
def test_a_killed_worker_is_restarted_and_every_row_comes_out_once(sentences, expected):
    ds = ray.data.from_items([{"id": i, "text": s} for i, s in enumerate(sentences)], override_num_blocks=20)
    def slow_source(batch):      # (defined here: Ray pickles it by value, the workers cannot import tests)
        time.sleep(0.2)          # the input trickles in: the job is still running when the worker dies
        return batch

    ds = ds.map_batches(slow_source, batch_size=None)
    out = translate_dataset(ds, model=TINY_GMLM, concurrency=1, batch_size=10, iterations=3)
    rows, done = [], threading.Event()

    def consume():
        try:
            for r in out.iter_rows():
                rows.append(r)
        finally:
            done.set()

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.monotonic() + 60
    while len(rows) < 20 and time.monotonic() < deadline and not done.is_set():
        time.sleep(0.02)
    pids = _worker_pids()
    assert pids and not done.is_set(), "the job ended (or never started) before a worker could be killed"
    killed_at = len(rows)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t.join(timeout=90)
    assert done.is_set(), "the job did not finish after the worker was killed"
    assert killed_at < N
    rows = _by_id(rows)
    assert [r["id"] for r in rows] == list(range(N))                   # exactly once
    assert [r["translation"] for r in rows] == expected
    assert not set(pids) & set(_worker_pids())                         # the actor runs in a new process


def test_bad_input_fails_before_any_work_is_scheduled(tmp_path):
    ds = ray.data.from_items([{"text": "A dog."}])
    with pytest.raises(ValueError, match="iterations"):
        translate_dataset(ds, model=TINY_GMLM, iterations=0)
    with pytest.raises(ValueError, match="length_beam"):
        translate_dataset(ds, model=TINY_GMLM, length_beam="3")
    with pytest.raises(ValueError, match="concurrency"):
        translate_dataset(ds, model=TINY_GMLM, concurrency=0)
    with pytest.raises(ValueError, match="column 'sentence'"):
        translate_dataset(ds, model=TINY_GMLM, column="sentence")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        translate_dataset(ds, model=tmp_path / "no-such-model")
    broken = tmp_path / "broken"
    shutil.copytree(TINY_GMLM, broken)
    (broken / "spm.model").unlink()
    with pytest.raises(ModelError, match="spm.model"):
        translate_dataset(ds, model=broken)


def test_an_untranslatable_row_fails_the_job_naming_it():
    ds = ray.data.from_items([{"text": "A dog."}, {"text": "x \ud800"}])
    with pytest.raises(Exception, match="not valid Unicode"):
        translate_dataset(ds, model=TINY_GMLM).take_all()


def test_cli_text_files_in_order(tmp_path, sentences, expected):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_bytes(("\n".join(sentences[:150]) + "\n").encode())
    (src / "b.txt").write_bytes(b"A man.\r\n\nTwo dogs.\rA cat.\n")        # \r\n ends a line, a bare \r does not
    (src / "empty.txt").write_bytes(b"")
    assert main(["translate", "--ray", "--model", str(TINY_GMLM), "--input", str(src), "--output",
                 str(tmp_path / "out"), "--iterations", "3", "--concurrency", "2", "--batch-size", "16"]) == 0
    assert (tmp_path / "out" / "a.txt").read_text(encoding="utf-8").split("\n")[:-1] == expected[:150]
    b = Translator(TINY_GMLM, intra_threads=1).translate_batch(["A man.", "", "Two dogs.\rA cat."], iterations=3)
    assert (tmp_path / "out" / "b.txt").read_text(encoding="utf-8") == "".join(r.text + "\n" for r in b)
    assert (tmp_path / "out" / "empty.txt").read_text() == ""
    assert not list((tmp_path / "out").glob("*.partial"))


def test_cli_jsonl_rows_keyed_by_their_columns(tmp_path, sentences, expected):
    rows = [{"key": f"s{i}", "caption": s} for i, s in enumerate(sentences[:60])]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["translate", "--ray", "--model", str(TINY_GMLM), "--input", str(tmp_path / "in.jsonl"),
                 "--output", str(tmp_path / "out"), "--column", "caption", "--iterations", "3"]) == 0
    got = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.json*")) for line in f.open(encoding="utf-8")]
    got = {r["key"]: r for r in got}
    assert sorted(got) == sorted(r["key"] for r in rows)
    assert [got[f"s{i}"]["translation"] for i in range(60)] == expected[:60]


def test_cli_bad_option_is_an_error_before_work(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("A dog.\n")
    assert main(["translate", "--ray", "--model", str(TINY_GMLM), "--input", str(tmp_path / "a.txt"),
                 "--output", str(tmp_path / "out"), "--length-beam", "0"]) == 2
    assert "length_beam" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.txt").exists()


def test_cli_parquet_rows_keep_their_columns(tmp_path, sentences, expected):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(40)), "text": sentences[:40]}), tmp_path / "in.parquet")
    assert main(["translate", "--ray", "--model", str(TINY_GMLM), "--input", str(tmp_path / "in.parquet"),
                 "--output", str(tmp_path / "out"), "--iterations", "3"]) == 0
    rows = _by_id([r for f in (tmp_path / "out").glob("*.parquet") for r in pq.read_table(f).to_pylist()])
    assert [r["id"] for r in rows] == list(range(40)) and [r["translation"] for r in rows] == expected[:40]


def test_ar_model_on_ray(sentences):
    from conftest import TINY_AR

    ds = ray.data.from_items([{"id": i, "text": s} for i, s in enumerate(sentences[:40])], override_num_blocks=4)
    rows = _by_id(translate_dataset(ds, model=TINY_AR, concurrency=1, batch_size=16, beam_size=2).take_all())
    want = [r.text for r in Translator(TINY_AR, intra_threads=1).translate_batch(sentences[:40], beam_size=2)]
    assert [r["translation"] for r in rows] == want
