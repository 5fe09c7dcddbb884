import json

import pytest
import torch

from unet.checkpoint import ModelCard, checkpoint_hash, load_checkpoint, save_checkpoint
from unet.errors import UNetError
from unet.model import UNet, UNetConfig

CONFIG = UNetConfig(in_bands=4, num_classes=3, base_width=4, depth=2)


def _card(**extra) -> ModelCard:
    return ModelCard(
        config=CONFIG,
        bands=("blue", "green", "red", "nir"),
        mean=(0.05, 0.07, 0.06, 0.3),
        std=(0.01, 0.02, 0.03, 0.1),
        class_names=("water", "open land", "forest"),
        class_colors=("#0000ff", "#ffff00", "#00ff00"),
        resolution=10.0,
        extra=extra,
    )


def _trained_model() -> UNet:
    torch.manual_seed(1)
    model = UNet(CONFIG)
    model.train()
    model(torch.randn(4, 4, 16, 16))  # moves batch-norm running stats off their defaults
    return model.eval()


def test_round_trip_is_exact(tmp_path):
    model = _trained_model()
    card = _card(heldout={"miou": 0.9})
    digest = save_checkpoint(tmp_path / "a.safetensors", model, card)
    loaded, loaded_card = load_checkpoint(tmp_path / "a.safetensors")
    assert loaded_card == card and loaded_card.extra == card.extra
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, tensor in original.items():
        assert torch.equal(tensor, restored[key]), key
    x = torch.randn(2, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    # Saving what was loaded gives the same bytes, hence the same hash.
    assert save_checkpoint(tmp_path / "b.safetensors", loaded, loaded_card) == digest
    assert checkpoint_hash(tmp_path / "b.safetensors") == digest


def test_format_is_documented_json_without_pickle(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", _trained_model(), _card())
    raw = (tmp_path / "c.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    doc = json.loads(header["__metadata__"]["statemap"])
    assert doc["format"] == "statemap.checkpoint"
    assert doc["bands"] == ["blue", "green", "red", "nir"]
    assert doc["classes"][2] == {"value": 2, "name": "forest", "color": "#00ff00"}
    assert set(doc["normalization"]) == {"mean", "std"} and doc["resolution"] == 10.0


def test_garbage_and_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UNetError, match=r"bad\.safetensors is not a readable safetensors"):
        load_checkpoint(bad)
    with pytest.raises(UNetError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(UNetError, match="no 'statemap' metadata"):
        load_checkpoint(tmp_path / "foreign.safetensors")


def test_card_must_match_the_model():
    with pytest.raises(UNetError, match="3 bands"):
        ModelCard(
            config=CONFIG,
            bands=("a", "b", "c"),
            mean=(0,) * 3,
            std=(1,) * 3,
            class_names=("x", "y", "z"),
            class_colors=("#000000",) * 3,
            resolution=10,
        )
