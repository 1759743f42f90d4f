"""Shared test setup: never the network, deterministic, small."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The processes the tests start (command-line runs, the app's server, Ray's workers) inherit this:
# one torch/OpenMP thread each, as in the tests' own process below. With two threads a subprocess
# spin-waits against the other pytest worker: a 64x64 six-view scene took 26 s instead of 1.3 s
# beside one busy process, and the clean-run test 48 s instead of 12 s.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
# Compiled modules are cached (__pycache__, ignored by git) even where PYTHONDONTWRITEBYTECODE is
# set, as on this project's sandboxed machines: without the cache each pytest worker rewrote the
# asserts of every test module again (2.3 s of its 6 s of collection) and each of the ~20 processes
# the tests start (Ray's workers, the app's server, command-line runs) compiled the project again.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    sys.dont_write_bytecode = False

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests use small tensors: one thread is as fast, and immune to oversubscribed machines (two
# torch threads spin-waiting against other processes made some tests 10-50x slower).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# The test files that take longest, longest first (measured with --durations): with -n 2 each file
# runs whole on one worker (--dist loadfile in pyproject.toml), so starting them first lets the
# short files fill in beside them instead of one long file running alone at the end. The other
# files keep their order after these.
LONGEST_FIRST = ("test_batch_ray.py", "test_app.py", "test_run.py", "test_dream.py", "test_refine_run.py",
                 "test_bad_inputs.py", "test_refine.py", "test_deepzoom.py", "test_splats_train.py", "test_backends.py",
                 "test_extend.py", "test_viewer.py", "test_splats_transform.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order
