"""The sample's reference files (stands, points, another grid's raster), made once
for the label and reference tests; a local Ray instance per test module."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import ray

from cluster.sample.catalog import SampleRegion, write_region
from cluster.sample.references import References, write_references
from cluster.sample.scene import SampleSpec

REFERENCE_SPEC = SampleSpec(width=256, height=256, stand_px=64)


@pytest.fixture(scope="session")
def ref_region(tmp_path_factory) -> SampleRegion:
    return write_region(tmp_path_factory.mktemp("references"), REFERENCE_SPEC, layouts=())


@pytest.fixture(scope="session")
def refs(ref_region) -> References:
    return write_references(ref_region, REFERENCE_SPEC)


@pytest.fixture(scope="session")
def truth(ref_region) -> np.ndarray:
    with rasterio.open(ref_region.labels) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def local_ray():
    """Two CPUs on loopback, shut down after the module (so the next may start its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
