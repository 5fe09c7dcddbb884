"""infra/viewer/cors.json: what a bucket needs so the viewer reads COGs from another origin."""

from __future__ import annotations

import json
from pathlib import Path

CORS = Path(__file__).resolve().parents[2] / "infra" / "viewer" / "cors.json"


def test_range_reads_are_allowed_and_their_headers_exposed():
    (rule,) = json.loads(CORS.read_text())["CORSRules"]
    assert set(rule) <= {"ID", "AllowedOrigins", "AllowedMethods", "AllowedHeaders",
                         "ExposeHeaders", "MaxAgeSeconds"}  # fmt: skip
    assert set(rule["AllowedMethods"]) == {"GET", "HEAD"}  # read only
    assert "Range" in rule["AllowedHeaders"]
    assert {"Content-Range", "Content-Length", "ETag"} <= set(rule["ExposeHeaders"])
    assert "*" not in rule["AllowedOrigins"]  # a team names its page's origin
