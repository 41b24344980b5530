"""The benchmark scripts are files, not a package: these fixtures load each one by path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> Iterator[ModuleType]:
    """benchmarks/NAME.py as a module, registered while in use (dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def sweep() -> Iterator[ModuleType]:
    yield from load_script("demo_sweep")


@pytest.fixture(scope="module")
def results() -> Iterator[ModuleType]:
    yield from load_script("demo_results")


@pytest.fixture(scope="module")
def throughput() -> Iterator[ModuleType]:
    yield from load_script("throughput")


@pytest.fixture(scope="module")
def flop_count() -> Iterator[ModuleType]:
    yield from load_script("flop_count")


@pytest.fixture(scope="module")
def methods() -> Iterator[ModuleType]:
    yield from load_script("methods")


@pytest.fixture(scope="module")
def segmentation() -> Iterator[ModuleType]:
    yield from load_script("segmentation")


@pytest.fixture(scope="module")
def segmentation_screen() -> Iterator[ModuleType]:
    yield from load_script("segmentation_screen")


@pytest.fixture(scope="module")
def ablation_screen() -> Iterator[ModuleType]:
    yield from load_script("ablation_screen")


@pytest.fixture(scope="module")
def distill_bench() -> Iterator[ModuleType]:
    yield from load_script("distill")


@pytest.fixture(scope="module")
def continue_screen() -> Iterator[ModuleType]:
    yield from load_script("continue_screen")


@pytest.fixture(scope="module")
def distill_screen() -> Iterator[ModuleType]:
    yield from load_script("distill_screen")
