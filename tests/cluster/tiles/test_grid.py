"""Grid arithmetic, tile ids and lazy tile enumeration."""

import itertools
import time
import types

import numpy as np
import pytest
import shapely

from cluster.errors import ClusterError
from cluster.tiles.grid import (
    Grid,
    Tile,
    count_tiles,
    iter_row_spans,
    iter_tiles,
    region_mask,
)
from cluster.tiles.region import Region

CRS = "EPSG:25832"
GRID = Grid(CRS, (400_000.0, 5_600_000.0), 10.0, 256, 16)  # span 2560 m
SPAN = 2560.0


def brute_force(grid, region):
    """Every tile of the bounding box whose footprint shares area with the region."""
    rows, cols = grid.tiles_in_bounds(region.bounds)
    tiles = [Tile(r, c) for r in rows for c in cols]
    boxes = shapely.box(*np.array([grid.tile_bounds(t) for t in tiles]).T)
    inside = shapely.intersects(region.geometry, boxes) & ~shapely.touches(region.geometry, boxes)
    return [t for t, keep in zip(tiles, inside, strict=True) if keep]


def at(fx, fy):
    """A point given in tile spans east/south of the grid origin."""
    return (400_000.0 + fx * SPAN, 5_600_000.0 - fy * SPAN)


# A wobbly ring with a hole big enough to swallow whole tiles.
SHELL = [at(0.3 + 9 * (0.5 + 0.45 * np.cos(a)), 0.6 + 9 * (0.5 + 0.4 * np.sin(a)))
         for a in np.linspace(0, 2 * np.pi, 23)[:-1]]  # fmt: skip
HOLE = [at(3.2, 3.1), at(7.1, 3.4), at(6.8, 6.9), at(3.3, 6.6)]
HOLED = Region(shapely.Polygon(SHELL, [HOLE]), CRS)
MULTI = Region(
    shapely.MultiPolygon(
        [
            shapely.Polygon([at(0.5, 0.5), at(4.2, 0.7), at(3.9, 4.4), at(0.2, 3.3)]),
            shapely.Polygon(
                [at(8.5, 6.1), at(20.2, 6.3), at(19.7, 15.8), at(8.9, 14.4)],
                [[at(11.1, 8.2), at(17.3, 8.1), at(17.6, 12.9), at(10.8, 12.7)]],
            ),
        ]
    ),
    CRS,
)
# Edges exactly on tile edges: tiles that merely touch it are not covered.
ALIGNED = Region(shapely.box(*at(2, 6), *at(5, 2)), CRS)


def test_tile_bounds_transform_and_shape():
    tile = Tile(2, 3)
    x0, y0 = 400_000.0 + 3 * SPAN, 5_600_000.0 - 2 * SPAN
    assert GRID.tile_bounds(tile) == (x0, y0 - SPAN, x0 + SPAN, y0)
    assert GRID.tile_bounds(tile, halo=True) == (
        x0 - 160,
        y0 - SPAN - 160,
        x0 + SPAN + 160,
        y0 + 160,
    )
    assert GRID.tile_shape() == (256, 256)
    assert GRID.tile_shape(halo=True) == (288, 288)
    transform = GRID.tile_transform(tile)
    assert transform @ (0, 0) == (x0, y0)
    assert transform @ (256, 256) == (x0 + SPAN, y0 - SPAN)
    assert GRID.tile_transform(tile, halo=True) @ (16, 16) == (x0, y0)
    # Neighbours share bit-identical edges, even at an awkward resolution.
    odd = Grid(CRS, (0.1, 0.7), 0.3, 333)
    for r, c in itertools.product(range(50), range(50)):
        a, b = odd.tile_bounds(Tile(r, c)), odd.tile_bounds(Tile(r + 1, c + 1))
        assert (a[2], a[1]) == (b[0], b[3])


def test_tile_id_round_trip_and_sort_order():
    tiles = [Tile(r, c) for r in (0, 7, 123, 999_999) for c in (0, 45, 456, 10_000)]
    for tile in tiles:
        assert Tile.parse(tile.id) == tile
    assert Tile(123, 456).id == "r000123_c000456"
    assert sorted(t.id for t in tiles) == [t.id for t in sorted(tiles)]


@pytest.mark.parametrize("bad", ["r123_c456", "r000123-c000456", "x", "r000123_c000456 ", 5])
def test_tile_parse_refuses_malformed_ids(bad):
    with pytest.raises(ClusterError, match="malformed"):
        Tile.parse(bad)


@pytest.mark.parametrize(
    ("row", "col", "field"), [(-1, 0, "row"), (0, 10**6, "col"), (1.5, 0, "row")]
)
def test_tile_refuses_bad_indices(row, col, field):
    with pytest.raises(ClusterError, match=f"Tile.{field}"):
        Tile(row, col)


def test_tile_of():
    assert GRID.tile_of(*at(3.5, 2.5)) == Tile(2, 3)
    assert GRID.tile_of(*at(3, 2)) == Tile(2, 3)  # corner: the east/south tile
    assert GRID.tile_of(*at(0, 0)) == Tile(0, 0)
    rng = np.random.default_rng(0)
    for fx, fy in rng.uniform(0, 40, (200, 2)):
        x, y = at(fx, fy)
        minx, miny, maxx, maxy = GRID.tile_bounds(GRID.tile_of(x, y))
        assert minx <= x < maxx and miny < y <= maxy
    with pytest.raises(ClusterError, match="north or west of the grid origin"):
        GRID.tile_of(*at(-0.1, 1))
    with pytest.raises(ClusterError, match="not finite"):
        GRID.tile_of(float("nan"), 5_590_000.0)


def test_tiles_in_bounds_and_covering():
    rows, cols = GRID.tiles_in_bounds((*at(1, 4), *at(3, 2)))
    assert (rows, cols) == (range(2, 4), range(1, 3))
    rows, cols = GRID.tiles_in_bounds((*at(1.5, 4.01), *at(3.2, 2)))
    assert (rows, cols) == (range(2, 5), range(1, 4))
    with pytest.raises(ClusterError, match="north or west of the grid origin"):
        GRID.tiles_in_bounds((*at(-1, 4), *at(3, 2)))
    with pytest.raises(ClusterError, match="minx < maxx"):
        GRID.tiles_in_bounds((*at(3, 4), *at(1, 2)))
    with pytest.raises(ClusterError, match="finite"):
        GRID.tiles_in_bounds((*at(1, 4), float("inf"), 5_600_000.0))
    grid = Grid.covering(CRS, (401_234.5, 5_512_345.0, 455_000.0, 5_587_654.0), 10.0, 256)
    assert grid.origin == (399_360.0, 5_588_480.0)
    rows, cols = grid.tiles_in_bounds((401_234.5, 5_512_345.0, 455_000.0, 5_587_654.0))
    assert rows.start == 0 and cols.start == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"crs": "EPSG:99999"}, "Grid.crs"),
        ({"crs": 25832}, "Grid.crs"),
        ({"origin": (1.0,)}, "Grid.origin"),
        ({"origin": (float("nan"), 0.0)}, "Grid.origin"),
        ({"resolution": 0}, "Grid.resolution"),
        ({"resolution": -10.0}, "Grid.resolution"),
        ({"tile_size": 0}, "Grid.tile_size"),
        ({"tile_size": 25.6}, "Grid.tile_size"),
        ({"halo": -1}, "Grid.halo"),
        ({"halo": 256}, "Grid.halo"),
    ],
)
def test_grid_validation_names_the_field(kwargs, field):
    args = {"crs": CRS, "origin": (0.0, 0.0), "resolution": 10.0, "tile_size": 256, "halo": 16}
    with pytest.raises(ClusterError, match=field):
        Grid(**(args | kwargs))


@pytest.mark.parametrize("region", [HOLED, MULTI, ALIGNED], ids=["holed", "multi", "aligned"])
def test_enumeration_matches_brute_force(region):
    tiles = list(iter_tiles(GRID, region))
    assert tiles == brute_force(GRID, region)
    assert tiles == sorted(tiles)  # row-major
    assert tiles == list(iter_tiles(GRID, region))  # deterministic
    assert count_tiles(GRID, region) == len(tiles)
    assert sum(len(run) for _, runs in iter_row_spans(GRID, region) for run in runs) == len(tiles)


def test_enumeration_matches_brute_force_on_random_regions():
    """Seeded blobs with holes on grids with awkward (inexact) float spans."""
    rng = np.random.default_rng(7)
    for _ in range(120):
        res, size = float(rng.choice([0.3, 1.0, 10.0, 0.2])), int(rng.choice([7, 64, 333]))
        span = res * size
        centres = shapely.points(rng.uniform(0, 15 * span, (rng.integers(1, 5), 2)) + 1000.0)
        blob = shapely.union_all(shapely.buffer(centres, rng.uniform(0.3, 4) * span, quad_segs=3))
        blob = blob.difference(shapely.buffer(centres[0], rng.uniform(0.1, 2) * span))
        if blob.is_empty or blob.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        region = Region(blob, CRS)
        grid = Grid.covering(CRS, region.bounds, res, size)
        assert list(iter_tiles(grid, region)) == brute_force(grid, region)


def test_edge_tiles_in_hole_tiles_out():
    tiles = set(iter_tiles(GRID, HOLED))
    assert GRID.tile_of(*SHELL[0]) in tiles  # straddles the outer boundary
    assert Tile(4, 4) not in tiles and Tile(5, 5) not in tiles  # wholly inside the hole
    assert Tile(3, 3) in tiles  # straddles the hole's edge
    assert set(iter_tiles(GRID, ALIGNED)) == {Tile(r, c) for r in (2, 3, 4, 5) for c in (2, 3, 4)}
    # A sliver of a region is still a tile to predict.
    sliver = Region(shapely.box(*at(7.999, 1.5), *at(8.001, 1.2)), CRS)
    assert list(iter_tiles(GRID, sliver)) == [Tile(1, 7), Tile(1, 8)]


def test_iter_tiles_is_lazy():
    # 0.1 m in 256-px tiles over 600 x 800 km: about 7e8 tiles, far too many to list.
    fine = Grid(CRS, (300_000.0, 6_100_000.0), 0.1, 256)
    huge = Region(
        shapely.Polygon(
            [(310_000, 6_090_000), (900_000, 6_000_000), (880_000, 5_300_000), (320_000, 5_310_000)]
        ),
        CRS,
    )
    start = time.perf_counter()
    tiles = iter_tiles(fine, huge)
    assert isinstance(tiles, types.GeneratorType)
    first = list(itertools.islice(tiles, 10))
    assert time.perf_counter() - start < 2.0
    assert first == sorted(first) and len(set(first)) == 10


def test_region_mask_marks_outside_pixels():
    for tile in (Tile(3, 3), GRID.tile_of(*SHELL[5]), Tile(1, 1)):
        for halo in (False, True):
            mask = region_mask(GRID, tile, HOLED, halo=halo)
            assert mask.shape == GRID.tile_shape(halo) and mask.dtype == bool
            h, w = mask.shape
            cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
            xs, ys = GRID.tile_transform(tile, halo) @ (cols, rows)
            expected = shapely.contains_xy(HOLED.geometry, xs, ys)
            assert (mask != expected).mean() < 0.002  # only pixels whose centre is on the edge
    assert 0 < region_mask(GRID, Tile(3, 3), HOLED).mean() < 1
    assert not region_mask(GRID, Tile(4, 4), HOLED).any()  # in the hole
    rows, cols = GRID.tiles_in_bounds(HOLED.bounds)
    inner = [Tile(r, c) for r in rows for c in cols
             if HOLED.geometry.contains(shapely.box(*GRID.tile_bounds(Tile(r, c))))]  # fmt: skip
    assert inner and all(region_mask(GRID, t, HOLED).all() for t in inner)
    assert not region_mask(GRID, Tile(30, 30), HOLED).any()  # far away


def test_region_in_another_crs_is_refused():
    other = Region(HOLED.geometry, "EPSG:3035", "lakes.geojson")
    with pytest.raises(ClusterError, match=r"lakes\.geojson.*EPSG:3035"):
        iter_tiles(GRID, other)
    west = Region(shapely.box(*at(-2, 3), *at(2, 1)), CRS, "west.geojson")
    with pytest.raises(ClusterError, match="north or west"):
        count_tiles(GRID, west)


def test_first_pixel_counts_from_the_crs_origin():
    grid = Grid("EPSG:25832", (400_000.0, 5_560_000.0), 10.0, 64, halo=8)
    assert grid.first_pixel(Tile(0, 0)) == (-556_000, 40_000)
    assert grid.first_pixel(Tile(2, 3), halo=True) == (-556_000 + 128 - 8, 40_000 + 192 - 8)
    shifted = Grid("EPSG:25832", (399_000.0, 5_561_000.0), 10.0, 64, halo=8)
    assert shifted.first_pixel(Tile(0, 0)) == (-556_100, 39_900)
