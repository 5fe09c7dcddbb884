"""Signed providers: tokens fetched per container, cached and renewed before they expire;
reads from a real Azure Blob emulator (Azurite) that refuses unsigned and expired
requests; a failure to sign names the container and carries no token."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio

from cluster.imagery import inflight, signing
from cluster.imagery.catalog import Catalog
from cluster.imagery.reader import AssetReadError, read_window
from cluster.sample.catalog import S2_COLLECTION, write_region
from cluster.sample.scene import BANDS, SampleSpec
from cluster.tiles.grid import Grid, Tile
from tests.azurite import ACCOUNT, TokenEndpoint, publish
from tests.netproxy import free_port

SPEC = SampleSpec(width=256, height=256, stand_px=64)
GRID = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, tile_size=128, halo=16)


def test_hrefs_are_signed_by_container_and_tokens_renewed_before_they_expire():
    with TokenEndpoint(lifetime_s=4) as endpoint:
        signer = signing.Signer(endpoint.url, frozenset({"127.0.0.1:9"}))
        assert signer.container("https://acct.blob.core.windows.net/box/a/b.tif") == ("acct", "box")
        assert signer.container(f"http://127.0.0.1:9/{ACCOUNT}/box/a.tif") == (ACCOUNT, "box")
        for plain in ("s3://bucket/key.tif", "/data/a.tif", "http://127.0.0.1:8/a/b/c.tif"):
            assert signer.sign(plain) == (plain, None)

        first, expires = signer.sign(f"http://127.0.0.1:9/{ACCOUNT}/box/a.tif")
        again, _ = signer.sign(f"http://127.0.0.1:9/{ACCOUNT}/box/b.tif?x=1")
        assert "sig=" in first and again.startswith(f"http://127.0.0.1:9/{ACCOUNT}/box/b.tif?x=1&")
        assert endpoint.issued["box"] == 1 and expires is not None
        held = signer._tokens[(ACCOUNT, "box")]
        assert held.expires - held.renew_at >= 2.0  # half its life left when renewed
        time.sleep(held.renew_at - time.time() + 0.1)  # renewed on next use, still valid
        _, later = signer.sign(f"http://127.0.0.1:9/{ACCOUNT}/box/a.tif")
        assert endpoint.issued["box"] == 2 and later is not None and later > expires


def test_a_container_without_tokens_is_named():
    with TokenEndpoint(lifetime_s=60) as endpoint:
        signer = signing.Signer(endpoint.url.replace("/v1/", "/v0/"), frozenset())
        with pytest.raises(signing.SigningError, match=r"container box of account acct.*404"):
            signer.sign("https://acct.blob.core.windows.net/box/a.tif")
    gone = signing.Signer(f"http://127.0.0.1:{free_port()}/token", frozenset())
    with pytest.raises(signing.SigningError, match="STATEMAP_SAS_TOKEN_URL"):
        gone.sign("https://acct.blob.core.windows.net/box/a.tif")


@pytest.mark.slow
def test_signed_reads_from_azure_equal_local_ones_across_token_renewals(
    azurite, tmp_path, monkeypatch
):
    region = write_region(tmp_path / "region", SPEC, layouts=("s2",))
    on_azure = publish(azurite, tmp_path / "region", region.catalog, "imagery",
                       tmp_path / "on-azure")  # fmt: skip
    href = Catalog.open(str(on_azure), BANDS, SPEC.crs, collections=[S2_COLLECTION])
    blob = href.items_for(GRID.tile_bounds(Tile(0, 0), halo=True))[0].bands[0].href
    with pytest.raises(rasterio.errors.RasterioIOError, match="403"):
        rasterio.open(blob)  # private: unsigned, no read

    def read_all(uri: str) -> list[np.ndarray]:
        cat = Catalog.open(uri, BANDS, SPEC.crs, collections=[S2_COLLECTION])
        out = []
        for tile in (Tile(r, c) for r in range(2) for c in range(2)):
            bounds = GRID.tile_bounds(tile, halo=True)
            out.append(read_window(cat.items_for(bounds), bounds, GRID.tile_shape(halo=True),
                                   SPEC.crs))  # fmt: skip
            time.sleep(0.7)  # 4 tiles over ~3 s: a 2-s token is renewed on the way
        return out

    want = read_all(str(region.catalog))
    with TokenEndpoint(lifetime_s=2) as endpoint:
        monkeypatch.setenv("STATEMAP_SAS_TOKEN_URL", endpoint.url)
        monkeypatch.setenv("STATEMAP_SAS_HOSTS", azurite.host)
        inflight.close_datasets()
        got = read_all(str(on_azure))
        assert endpoint.issued["imagery"] >= 2
        monkeypatch.setenv("STATEMAP_SAS_TOKEN_URL", endpoint.url + "/nowhere")
        with pytest.raises(AssetReadError) as refused:  # a new process without tokens
            read_window([href.items_for(GRID.tile_bounds(Tile(0, 0), halo=True))[0]],
                        GRID.tile_bounds(Tile(0, 0), halo=True), GRID.tile_shape(halo=True),
                        SPEC.crs)  # fmt: skip
    inflight.close_datasets()
    assert "imagery" in str(refused.value) and "sig=" not in str(refused.value)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(want[0]).mean() > 0.5
