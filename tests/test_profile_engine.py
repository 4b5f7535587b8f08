"""bench/profile_engine.py names its outputs after the decoding options, so that profiling the defaults and
another configuration into the same folder keeps both."""
import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("profile_engine", Path(__file__).resolve().parent.parent / "bench" / "profile_engine.py")
profile_engine = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(profile_engine)


def test_output_names_follow_the_options():
    assert profile_engine.output_stem("") == "profile"
    assert profile_engine.output_stem("iterations=10,length_beam=5") == "profile_T10_K5"
    assert profile_engine.output_stem("iterations=8,length_beam=2,remask=threshold") == "profile_T8_K2_remaskthreshold"
    assert profile_engine.parse_options("iterations=8,length_offset=-1") == {"iterations": 8, "length_offset": -1}
