"""``statemap items``: what statemap will read from each item, per provider."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.cli import main
from tests.cluster.imagery.test_providers import DATA, EXPECTED, NAIP, PC

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", list(EXPECTED), ids=["earthsearch", "pc-s2", "cdse", "naip"])
def test_items_json_per_provider(name):
    run = subprocess.run(
        [str(BIN / "statemap"), "items", str(DATA / name), "--bands", "blue,green,red,nir",
         "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (line,) = run.stdout.splitlines()
    doc = json.loads(line)
    assets, indexes, scale, offset, nodata, mask_key, invalid = EXPECTED[name]
    assert doc["id"] == json.loads((DATA / name).read_text())["id"]
    assert [b["name"] for b in doc["bands"]] == ["blue", "green", "red", "nir"]
    assert [b["asset"] for b in doc["bands"]] == list(assets)
    assert [b["band"] for b in doc["bands"]] == list(indexes)
    for band in doc["bands"]:
        assert math.isclose(band["scale"], scale) and math.isclose(band["offset"], offset)
        assert band["nodata"] == nodata and band["href"] and band["from"]
    if mask_key is None:
        assert doc["mask"] is None
    else:
        assert doc["mask"] == {"asset": mask_key, "invalid": list(invalid)}


def _collection(tmp_path: Path, *docs: dict) -> Path:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(docs)}))
    return path


def test_unusable_items_are_named_and_the_exit_code_says_so(tmp_path, capsys):
    good = json.loads((DATA / PC).read_text())
    bad = json.loads((DATA / PC).read_text()) | {"id": "no-nir"}
    bad["assets"] = {k: v for k, v in bad["assets"].items() if k != "B08"}
    path = _collection(tmp_path, good, bad)
    assert main(["items", str(path), "--bands", "blue,nir", "--json"]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == [good["id"], "no-nir"]
    assert "bands" in lines[0] and "no band 'nir'" in lines[1]["error"]
    assert main(["items", str(path), "--bands", "blue,nir", "--collections", "other"]) == 2
    assert "none of its 2 items pass" in capsys.readouterr().err


def test_config_overrides_apply(tmp_path, capsys):
    naip = json.loads((DATA / NAIP).read_text())
    config = {
        "catalog": "items.json", "region": "r.geojson", "checkpoint": "m.safetensors",
        "store": "s.zarr", "grid": {"crs": "EPSG:26917", "resolution": 1},
        "assets": {"naip": {"bands": {"blue": {"scale": 0.004}, "nir": {"band": 4}}}},
    }  # fmt: skip
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(config))
    path = _collection(tmp_path, naip)
    args = ["items", str(path), "--bands", "blue,nir", "--config", str(tmp_path / "predict.yaml")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "blue=image[3] x0.004 +0" in out and "config assets.naip.bands.blue" in out
    assert "nir=image[4] x1 +0" in out and "1 item(s) shown, 0 unusable" in out


def test_a_stac_api_needs_a_bbox(capsys):
    args = ["items", "https://earth-search.aws.element84.com/v1", "--bands", "blue"]
    assert main(args) == 2
    assert "is a STAC API: give --bbox W,S,E,N" in capsys.readouterr().err
