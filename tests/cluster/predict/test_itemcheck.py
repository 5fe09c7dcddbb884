"""Every item of a run checked at its overviews before the run writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from cluster.predict.driver import check_inputs, run_predict
from cluster.predict.inputcheck import InputCheckError
from jobs.config import load_predict_config
from tests.conftest import predict_config

N_ITEMS = 500
DN, NO_OFFSET = 137, 388  # the two bad items among the 500


def _catalog(sample: Path, out: Path) -> Path:
    """ndjson of ``N_ITEMS`` items: the sample's scenes over and over (their files
    shared, ids and dates their own); item ``DN`` without scale (raw DN read as
    reflectance), item ``NO_OFFSET`` without the harmonisation offset its pixels need."""
    scenes = []
    for path in sorted((sample / "sample" / "sentinel-2-l2a").glob("*/*.json")):
        doc = json.loads(path.read_text())
        for asset in doc["assets"].values():
            asset["href"] = str((path.parent / asset["href"]).resolve())
        doc["links"] = []
        scenes.append(doc)
    lines = []
    for i in range(N_ITEMS):
        doc = json.loads(json.dumps(scenes[i % len(scenes)]))
        doc["id"] = f"{doc['id']}-{i:03d}"
        doc["properties"]["datetime"] = f"2023-{6 + i % 3:02d}-{1 + i % 28:02d}T10:30:00Z"
        for key, asset in doc["assets"].items():
            for band in asset.get("raster:bands", []) if key != "scl" else []:
                if i == DN:
                    band.update(scale=1.0, offset=0.0)
                elif i == NO_OFFSET:
                    band["offset"] = 0.0
        lines.append(json.dumps(doc))
    path = out / "items.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(sample: Path, tmp_path: Path, **run: object) -> Path:
    config = predict_config(sample, tmp_path / "run")
    doc = yaml.safe_load(config.read_text())
    doc["catalog"] = str(_catalog(sample, tmp_path))
    doc["run"].update(run)
    config.write_text(yaml.safe_dump(doc))
    return config


@pytest.mark.slow
def test_two_bad_items_among_500_stop_the_run_before_it_writes(trained_sample, tmp_path):
    spec = load_predict_config(_config(trained_sample, tmp_path))
    start = time.perf_counter()
    with pytest.raises(InputCheckError) as refused:
        run_predict(spec, progress=False)
    seconds = time.perf_counter() - start
    message = str(refused.value)
    first, *named = message.splitlines()
    print(f"refused in {seconds:.1f} s: {first}")
    assert first.startswith(f"input check: 2 of {N_ITEMS} items do not look like")
    assert len(named) == 2
    dn, offset = sorted(named, key=lambda line: f"-{DN:03d} " not in line)
    assert f"-{DN:03d} (collection" in dn and "raw digital numbers" in dn
    assert f"-{NO_OFFSET:03d} (collection" in offset and "missing harmonisation offset" in offset
    assert "in its overviews" in dn and "in its overviews" in offset
    assert not (tmp_path / "run" / "map.zarr").exists()


def test_accepted_shift_is_reported_not_refused(trained_sample, tmp_path):
    setup = load_predict_config(_config(trained_sample, tmp_path, accept_input_shift=True)).setup
    checked = check_inputs(setup)
    assert checked.items_checked is not None
    found = checked.items_checked
    assert found.items == N_ITEMS and found.judged == N_ITEMS
    assert len(found.problems) == 2 and set(found.problems) <= set(checked.warnings)
    print(found.line())
