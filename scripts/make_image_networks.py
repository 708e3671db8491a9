"""Builds the tiny image-network fixtures under tests/fixtures/models and their torch references:

- ``inception-tiny`` (kind ``image-features``): a seeded random conv net in Inception's role for
  FID and the Inception Score: 64x64 RGB in 0-255 (bilinear resize, as torchmetrics feeds its
  Inception), normalised inside as torch-fidelity's Inception does ((x - 128) / 128), two
  stride-2 convolutions, global average pooling -> ``features`` (16), a linear layer ->
  ``logits`` (10);
- ``lpips-tiny`` (kind ``image-distance``): LPIPS's structure on a seeded random backbone: two
  conv stages, each feature map unit-normalised over channels, the squared difference weighted
  by a non-negative 1x1 convolution, averaged over space, summed over stages; inputs in [-1, 1].

References (``reference.npz``), from Pillow (``convert("RGB").resize((64, 64), BILINEAR)``) +
torch on the bundled photographs: the features, logits and pair distances; torchmetrics'
``FrechetInceptionDistance`` and ``InceptionScore`` (splits=1: its random permutation then
cannot change the value) with these networks as their feature extractors, over two halves of
the photographs.

Run with torch and torchmetrics installed: ``python scripts/make_image_networks.py``. Nothing is
downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "models"
SAMPLE = ROOT / "python" / "interleaf" / "data" / "sample" / "images"
SEED = 20261203
SIZE = 64


def photos() -> list[Path]:
    return sorted(SAMPLE.iterdir())


def pil_pixels(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    arr = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) for p in paths]
    return np.stack(arr).transpose(0, 3, 1, 2)  # N, 3, H, W in 0-255


def main() -> None:
    import torch
    from torch import nn
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    from interleaf.models.export import _onnx_export

    torch.manual_seed(SEED)

    class TinyInception(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            f = self.body((x - 128.0) / 128.0) * 10.0  # scaled so FID and IS are far from 0 and 1
            return f, self.head(f) * 5.0

    class Features(nn.Module):  # torchmetrics' custom feature extractor: one output
        def __init__(self, net: nn.Module, which: int, num: int) -> None:
            super().__init__()
            self.net, self.which, self.num_features = net, which, num

        def forward(self, x):
            return self.net(x.float())[self.which]

    class TinyLPIPS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            self.s2 = nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
            self.lin = nn.ModuleList([nn.Conv2d(8, 1, 1, bias=False), nn.Conv2d(12, 1, 1, bias=False)])
            for lin in self.lin:
                lin.weight.data = lin.weight.data.abs()

        def forward(self, image0, image1):
            total = 0
            a, b = image0, image1
            for stage, lin in zip((self.s1, self.s2), self.lin, strict=True):
                a, b = stage(a), stage(b)
                na = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
                nb = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + lin((na - nb).square()).mean(dim=(2, 3))
            return total[:, 0]

    inception, lpips = TinyInception().eval(), TinyLPIPS().eval()
    paths = photos()
    px = pil_pixels(paths)
    with torch.no_grad():
        feats, logits = (t.numpy() for t in inception(torch.from_numpy(px)))
        m1 = torch.from_numpy(px / 127.5 - 1.0)
        perm = torch.from_numpy(np.roll(np.arange(len(paths)), 1))
        dist = lpips(m1, m1[perm]).numpy()
        half = len(paths) // 2
        fid = FrechetInceptionDistance(feature=Features(inception, 0, 16), normalize=False)
        fid.update(torch.from_numpy(px[:half]), real=True)
        fid.update(torch.from_numpy(px[half:]), real=False)
        fid_value = float(fid.compute())
        iscore = InceptionScore(feature=Features(inception, 1, 10), splits=1, normalize=False)
        iscore.update(torch.from_numpy(px))
        is_mean = float(iscore.compute()[0])

    pre_fid = {"size": {"height": SIZE, "width": SIZE}, "resample": 2, "do_resize": True, "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.0, 0.0, 0.0], "image_std": [1 / 255] * 3}
    pre_lpips = {"size": {"height": SIZE, "width": SIZE}, "resample": 2, "do_resize": True, "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    x = torch.zeros(2, 3, SIZE, SIZE)
    for name, module, inputs, outputs, pre, kind in (
        ("inception-tiny", inception, (x,), ("features", "logits"), pre_fid, "image-features"),
        ("lpips-tiny", lpips, (x, x), ("distance",), pre_lpips, "image-distance"),
    ):
        d = OUT / name
        in_names = ("pixel_values",) if len(inputs) == 1 else ("image0", "image1")
        _onnx_export(module, inputs, d / "onnx" / "model.onnx", in_names, outputs, {n: {0: "batch"} for n in (*in_names, *outputs)})
        (d / "config.json").write_text(json.dumps({"model_type": kind, "note": "seeded random weights; a test fixture, not a real network"}, indent=2) + "\n")
        (d / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    np.savez(OUT / "inception-tiny" / "reference.npz", names=np.array([p.name for p in paths]), features=feats, logits=logits, fid=fid_value, fid_half=half, inception_score=is_mean)
    np.savez(OUT / "lpips-tiny" / "reference.npz", names=np.array([p.name for p in paths]), distance=dist, shift=1)
    print(f"fid {fid_value:.6f}  is {is_mean:.6f}  lpips {dist[:3]}")


if __name__ == "__main__":
    main()
