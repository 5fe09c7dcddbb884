"""Every region config validates, and runs end to end on tiny generated data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import yaml

from jobs.config import load_region_config
from jobs.errors import ConfigError
from jobs.run import execute, prepare
from jobs.runrecord import load_record, record_uri
from jobs.schedule import DEFAULT_SCHEDULES, load_schedules
from jobs.validate import validate
from tests.jobs.regiondata import PERIOD, REGIONS, tiny_data

IDS = [p.stem for p in REGIONS]


@pytest.fixture(scope="module", autouse=True)
def _no_ray_left_behind():
    """The runs here start a local Ray instance; later modules start their own."""
    yield
    import ray

    ray.shutdown()


def test_the_regions_are_there():
    assert set(IDS) >= {"rlp-s2-10m", "rlp-ortho-1m", "sample"}


@pytest.mark.parametrize("path", REGIONS, ids=IDS)
def test_region_config_validates(path):
    config = load_region_config(path)
    assert config.name == path.stem  # schedules and manifests name regions by file
    lines = validate(path)
    assert lines[0].endswith(f"valid region config {config.name}")


def test_rlp_tiles_at_the_scale_planned():
    """DESIGN.md: ~800 tiles at 10 m, ~76,000 at 1 m (512 px)."""
    from cluster.tiles.grid import count_tiles
    from cluster.tiles.region import load_region

    for name, expected in (("rlp-s2-10m", 800), ("rlp-ortho-1m", 76_000)):
        path = next(p for p in REGIONS if p.stem == name)
        spec = load_region_config(path).run_spec(path.parent, store="unused")
        region = load_region(spec.setup.region, spec.setup.grid.crs)
        assert 19_500e6 < region.geometry.area < 20_200e6  # the state's 19,858 km²
        assert expected * 0.9 < count_tiles(spec.setup.grid, region) < expected * 1.15


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("grid.resolutoin=10", "grid.resolutoin: unknown field"),
        ("output.compression=JPEG", "output.compression"),
        ("name=Rhineland Palatinate", "name"),
        ("period.end=2026-02-30", "period.end=2026-02-30"),
        ("period.end='2026-02-30'", "period.end '2026-02-30' is not an ISO date"),
        ("period={start: 2026-09-01, end: 2026-08-31}", "ends before it starts"),
        ("storage.secret_access_key=abc", "credentials are not read from configs"),
    ],
)
def test_a_wrong_field_is_named(tmp_path, override, field):
    path = next(p for p in REGIONS if p.stem == "rlp-s2-10m")
    with pytest.raises(ConfigError) as err:
        load_region_config(path, [override])
    assert field in str(err.value)
    assert str(path) in str(err.value) or str(err.value).startswith(f"override {override!r}")
    assert "abc" not in str(err.value)  # a credential is not echoed


def test_statemap_validate_exit_codes(tmp_path, capsys):
    from jobs.cli import main

    assert main(["validate", str(REGIONS[0])]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(REGIONS[0].read_text().replace("tile_size:", "tile_sise:"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "grid.tile_sise: unknown field: remove it or check its spelling" in err


def test_a_missing_field_is_named(tmp_path):
    path = next(p for p in REGIONS if p.stem == "sample")
    text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("checkpoint"))
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"checkpoint: required field is missing"):
        validate(tmp_path / "x.yaml")


def test_schedules_name_existing_region_configs():
    schedules = load_schedules(DEFAULT_SCHEDULES)
    assert {e.config for e in schedules.entries} <= set(REGIONS)
    assert {e.region for e in schedules.entries} == {"rlp-s2-10m", "rlp-ortho-1m"}


@pytest.mark.slow
@pytest.mark.parametrize("path", REGIONS, ids=IDS)
def test_region_runs_on_tiny_data(path, tmp_path, capsys):
    overrides = tiny_data(path, tmp_path)
    run = prepare(path, period=_period(), overrides=overrides)
    config = run.config
    assert re.fullmatch(rf"{config.name}-2023-05-01_2023-08-31-[0-9a-f]{{12}}", run.run_id)
    assert run.maps == str(tmp_path / "maps" / run.run_id)

    assert execute(run, progress=False) == 0
    record = load_record(record_uri(run.maps))
    assert record.state == "succeeded" and record.tiles_done > 0 and record.tiles_failed == 0
    assert record.store == str(tmp_path / "stores" / f"{run.run_id}.zarr")
    cog = tmp_path / "maps" / run.run_id / f"{run.run_id}_class.tif"
    assert str(cog) in record.outputs
    with rasterio.open(cog) as src:
        assert src.crs.to_string() == config.grid.crs
        assert src.res == (config.grid.resolution, config.grid.resolution)
        assert src.tags()["RUN_ID"] == run.run_id
    for name in ("quicklook.png", "collection.json", "config.yaml"):
        assert (tmp_path / "maps" / run.run_id / name).is_file()

    # Submitting it again finds it done: nothing is recomputed.
    shutil.rmtree(tmp_path / "sample")  # the inputs are no longer needed
    capsys.readouterr()
    assert execute(prepare(path, period=_period(), overrides=overrides), progress=False) == 0
    assert "already succeeded" in capsys.readouterr().out


def _period():
    from jobs.period import Period

    return Period.parse(PERIOD)


def test_state_configs_ask_for_the_gpu_group_they_deploy_to():
    """One Predictor actor per GPU: the state configs' actors are the GPU worker
    group's maxReplicas (one GPU per worker) in infra/kuberay/raycluster.yaml."""
    import yaml

    manifest = yaml.safe_load((REGIONS[0].parents[2] / "infra/kuberay/raycluster.yaml").read_text())
    (group,) = manifest["spec"]["workerGroupSpecs"]
    for path in REGIONS:
        config = load_region_config(path)
        if config.name.startswith("rlp-"):
            assert config.run.device == "cuda" and config.run.actors == group["maxReplicas"]


def test_statemap_plan_on_tiny_data(tmp_path, capsys):
    from jobs.cli import main
    from tests.jobs.regiondata import with_overrides

    source = next(p for p in REGIONS if p.stem == "rlp-s2-10m")
    config = with_overrides(source, tiny_data(source, tmp_path, size=96), tmp_path / "c.yaml")
    capsys.readouterr()
    assert main(["plan", str(config), "--period", PERIOD, "--measure-seconds", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.match(r"throughput [0-9.e+]+ tiles/s measured here on cpu", out[0])
    last = re.fullmatch(
        r"tiles=(\d+) items=(\d+) input_gb=([0-9.]+) output_gb=([0-9.]+) gpu_hours=([0-9.]+)",
        out[-1],
    )
    assert last, out[-1]
    from cluster.tiles.grid import count_tiles
    from cluster.tiles.region import load_region

    setup = load_region_config(config).run_spec(tmp_path, store="unused").setup
    assert int(last[1]) == count_tiles(setup.grid, load_region(setup.region, setup.grid.crs))
    assert int(last[2]) > 0  # the sample scenes over the piece of the state


def test_region_file_in_metres_without_crs_is_one_line_and_exit_2(tmp_path):
    """The commonest region mistake, as a user meets it on the command line."""
    region = tmp_path / "state.geojson"
    ring = [[412_000, 5_540_000], [436_000, 5_540_000], [436_000, 5_561_000], [412_000, 5_540_000]]
    region.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    config = yaml.safe_load(next(p for p in REGIONS if p.stem == "rlp-s2-10m").read_text())
    config["region"] = str(region)
    path = tmp_path / "region.yaml"
    path.write_text(yaml.safe_dump(config))
    statemap = Path(sys.executable).with_name("statemap")
    for args in (["run", "--config", str(path)], ["plan", str(path)]):
        run = subprocess.run([str(statemap), *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert lines[0].startswith(f"statemap: error: {region}: ")
        assert "cannot be longitude/latitude" in lines[0] and '"crs"' in lines[0]
