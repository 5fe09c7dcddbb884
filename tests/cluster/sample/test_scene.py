"""The synthetic region must be separable by texture and only by texture."""

import numpy as np
import pytest

from cluster.sample.scene import BANDS, CLASS_NAMES, NODATA_CLASS, SampleSpec, synthesize

SPEC = SampleSpec(width=256, height=256, stand_px=64)


@pytest.fixture(scope="module")
def scene():
    return synthesize(SPEC)


def test_same_seed_same_scene_other_seed_other_scene(scene):
    again = synthesize(SPEC)
    np.testing.assert_array_equal(again.labels, scene.labels)
    np.testing.assert_array_equal(again.reflectance, scene.reflectance)
    other = synthesize(SampleSpec(seed=1, width=256, height=256, stand_px=64))
    assert not np.array_equal(other.labels, scene.labels)


def test_shapes_and_types(scene):
    assert scene.labels.shape == (SPEC.height, SPEC.width)
    assert scene.labels.dtype == np.uint8
    assert scene.reflectance.shape == (len(BANDS), SPEC.height, SPEC.width)
    assert scene.reflectance.dtype == np.float32


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_class_present(seed):
    labels = synthesize(SampleSpec(seed=seed, width=256, height=256, stand_px=64)).labels
    assert set(np.unique(labels)) == {*range(len(CLASS_NAMES)), NODATA_CLASS}


def testunmapped_corner_is_nodata_in_labels_and_reflectance(scene):
    unmapped = scene.labels == NODATA_CLASS
    assert unmapped[-1, 0]  # south-west corner
    assert not unmapped[0, 0] and not unmapped[-1, -1] and not unmapped[0, -1]
    assert 0 < unmapped.mean() < 0.05
    assert np.isnan(scene.reflectance[:, unmapped]).all()
    assert not np.isnan(scene.reflectance[:, ~unmapped]).any()
    valid = scene.reflectance[:, ~unmapped]
    assert valid.min() > 0 and valid.max() <= 1


@pytest.mark.parametrize("seed", [0, 3])
def test_forest_classes_share_spectra(seed):
    """A per-pixel classifier sees the same distribution in both forest classes.

    The mixture is bimodal (crowns, gaps) with half in each mode, so the median
    falls in the empty gap between them and is left out.
    """
    scene = synthesize(SampleSpec(seed=seed, width=256, height=256, stand_px=64))
    broadleaf = scene.reflectance[:, scene.labels == 2]
    conifer = scene.reflectance[:, scene.labels == 3]
    for b in range(len(BANDS)):
        np.testing.assert_allclose(broadleaf[b].mean(), conifer[b].mean(), atol=0.002)
        for q in (0.05, 0.1, 0.25, 0.75, 0.9, 0.95):
            qb, qc = np.quantile(broadleaf[b], q), np.quantile(conifer[b], q)
            assert abs(qb - qc) < 0.003, (BANDS[b], q, qb, qc)
    nir = BANDS.index("nir")
    assert abs((broadleaf[nir] > 0.29).mean() - (conifer[nir] > 0.29).mean()) < 0.01


def test_forest_classes_differ_in_texture(scene):
    """Neighbouring pixels differ more in small-crowned conifer stands."""
    nir = scene.reflectance[BANDS.index("nir")]
    same = scene.labels[:, 1:] == scene.labels[:, :-1]
    step = np.abs(np.diff(nir, axis=1))

    def roughness(cls: int) -> float:
        return float(step[same & (scene.labels[:, 1:] == cls)].mean())

    assert roughness(3) > 1.5 * roughness(2)


def test_water_and_open_land_are_spectrally_distinct(scene):
    nir = scene.reflectance[BANDS.index("nir")]
    assert nir[scene.labels == 0].max() < nir[scene.labels == 1].min()


def test_too_small_region_is_refused():
    with pytest.raises(ValueError, match="too small"):
        synthesize(SampleSpec(width=16, height=64))
