"""Fixtures of the kvarn Python tests. ctest runs them (tests/CMakeLists.txt: python_package)
with KVARN_LIBRARY (the build's libkvarn.so) and KVARN_CLI (the build's kvarn binary) set, the
package installed by `pip install ./python` into a temporary directory."""

import os
import pathlib

import pytest

import kvarn


def cache_dir() -> pathlib.Path:
    if os.environ.get("KVARN_CACHE"):
        return pathlib.Path(os.environ["KVARN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(base) / "kvarn"


SMOLLM2 = cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"

# Under ctest the suite must test the pip-installed package, not a stray copy on sys.path.
if os.environ.get("KVARN_EXPECT_PACKAGE_IN"):
    where = pathlib.Path(kvarn.__file__).resolve()
    assert pathlib.Path(os.environ["KVARN_EXPECT_PACKAGE_IN"]).resolve() in where.parents, where


@pytest.fixture(scope="session")
def smollm2_path():
    if not SMOLLM2.exists():
        pytest.skip("SmolLM2 not fetched (scripts/fetch_models.sh)")
    return str(SMOLLM2)


@pytest.fixture(scope="session")
def model(smollm2_path):
    m = kvarn.Model(smollm2_path)
    yield m
    m.close()


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("KVARN_CLI")
    if not path:
        pytest.fail("KVARN_CLI is not set: run these tests through ctest (python_package)")
    return path


@pytest.fixture(scope="session")
def pydocs():
    p = cache_dir() / "pydocs.txt"
    if not p.exists():
        pytest.skip("pydocs.txt not fetched (scripts/fetch_models.sh)")
    return p.read_bytes()
