"""Options of the benchmarks in bench/ (pytest-benchmark micro-benchmarks)."""


def pytest_addoption(parser):
    parser.addoption("--threads", type=int, default=2, help="threads for the engine's ops and for the BLAS")


def pytest_configure(config):
    # bench_*.py files hold the benchmarks; collect them when bench/ is given as a path
    config.addinivalue_line("python_files", "bench_*.py")
