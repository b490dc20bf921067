"""Content-defined chunking of artifacts: exact reassembly, corruption detection, and the
property the update agent relies on: fine-tuning only the last layer group leaves most of
the exported file's chunks unchanged."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from hadmc.compress.export import export_onnx
from hadmc.device.chunking import (
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    Manifest,
    chunk_bytes,
    chunk_file,
    delta_bytes,
    iter_chunk_data,
    reassemble,
    shared_fraction,
)

torch.set_num_threads(1)


def _random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _store(data: bytes, manifest: Manifest) -> dict[str, bytes]:
    return {ref.sha256: chunk for ref, chunk in iter_chunk_data(data, manifest)}


def test_reassembly_is_byte_exact():
    data = _random_bytes(300_000)
    m = chunk_bytes(data, "blob")
    assert m.size_bytes == len(data) and m.sha256 == hashlib.sha256(data).hexdigest()
    # Chunks tile the file without gaps and respect the size bounds (last one may be short).
    assert [c.offset for c in m.chunks] == [0] + list(
        np.cumsum([c.size_bytes for c in m.chunks])[:-1]
    )
    assert all(c.size_bytes <= MAX_CHUNK_BYTES for c in m.chunks)
    assert all(c.size_bytes >= MIN_CHUNK_BYTES for c in m.chunks[:-1])
    assert reassemble(m, _store(data, m)) == data
    assert Manifest.from_dict(m.to_dict()) == m


def test_corrupted_chunk_fails_the_whole_file_hash():
    data = _random_bytes(100_000, seed=1)
    m = chunk_bytes(data)
    store = _store(data, m)
    victim = m.chunks[len(m.chunks) // 2].sha256
    bad = bytearray(store[victim])
    bad[10] ^= 0xFF
    store[victim] = bytes(bad)
    with pytest.raises(ValueError, match="sha256"):
        reassemble(m, store)


def test_local_edit_changes_only_nearby_chunks():
    base = _random_bytes(200_000, seed=2)
    new = base[:100_000] + b"inserted bytes" + base[100_000:]
    mb, mn = chunk_bytes(base), chunk_bytes(new)
    # An insertion shifts everything after it; content-defined boundaries resynchronise
    # within a chunk or two, so at most ~3 max-size chunks differ.
    assert delta_bytes(mn, mb) <= 3 * MAX_CHUNK_BYTES
    assert shared_fraction(mn, mb) > 0.8
    assert delta_bytes(mb, mb) == 0 and shared_fraction(mb, mb) == 1.0


class _Net(nn.Module):
    """Fallback model (~0.5 MB of fp32 weights) when the demo model is not available."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 1
        for out in (32, 64, 64, 128, 128):
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            ch = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(ch, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def model_and_data(request):
    try:
        import hadmc.models  # noqa: F401

        model, data = request.getfixturevalue("demo")
        return model.eval(), data.x_train[:256], data.y_train[:256]
    except (ImportError, pytest.FixtureLookupError):
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        x = rng.random((256, 1, 16, 16), dtype=np.float32)
        return _Net().eval(), x, rng.integers(0, 10, 256)


def _last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def test_finetuning_last_group_keeps_most_chunks(model_and_data, tmp_path):
    parent, x, y = model_and_data
    example = torch.from_numpy(x[:1].copy())
    parent_art = export_onnx(parent, tmp_path / "parent.onnx", example)

    child = copy.deepcopy(parent).eval()  # eval: BN statistics must not move
    for p in child.parameters():
        p.requires_grad_(False)
    head = _last_linear(child)
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64))
    for i in range(0, len(xt), 32):
        opt.zero_grad()
        nn.functional.cross_entropy(child(xt[i : i + 32]), yt[i : i + 32]).backward()
        opt.step()
    assert not torch.equal(head.weight, _last_linear(parent).weight)  # it really changed
    child_art = export_onnx(child, tmp_path / "child.onnx", example)

    mp, mc = chunk_file(parent_art.path), chunk_file(child_art.path)
    assert mp.sha256 != mc.sha256
    frac = shared_fraction(mc, mp)
    assert frac >= 0.8, f"only {frac:.1%} of the child's bytes are shared"
    # The update must carry at least the changed head weights, and no more than the rest.
    head_bytes = sum(p.numel() * 4 for p in head.parameters())
    assert head_bytes <= delta_bytes(mc, mp) <= (1 - frac) * mc.size_bytes + 1
