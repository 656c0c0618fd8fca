"""The network as other tools run it: one tensor in, the restored image out.

1. :class:`HINetImage` is HINet whose ``forward(x)`` returns only ``out_2``
   (the final image), the single output that ONNX, TorchScript and
   bioimage.io consumers expect; same state_dict keys as HINet.
2. :func:`example_input` makes the tracing input: batch 2 (so the batch axis is
   not specialised to 1), ``in_chn`` channels, H x W = 2 x and 3 x the size
   multiple ``2**(depth-1)`` (two different sizes, neither specialised).
3. :func:`architecture_source` writes the model code as one self-contained
   Python file (bioimage.io's ``pytorch_state_dict`` architecture): the
   modules of :mod:`napari_hinet.model` that ``hinet.py`` needs, in
   dependency order, with their package-relative imports removed, then
   :class:`HINetImage`. It is generated from the code that runs here, so the
   two never drift apart.
4. :func:`image_network` builds the float32 CPU :class:`HINetImage` of a
   model (the caller's model is neither moved nor changed).
"""

from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoints import load_model
from ..model import HINet, LocalHalfInstanceNorm, get_statistics

__all__ = [
    "HINetImage",
    "architecture_source",
    "as_model",
    "example_input",
    "image_network",
    "local_statistics",
    "traceable",
]

_MODEL_DIR = Path(__file__).resolve().parents[1] / "model"


class HINetImage(HINet):
    """HINet returning only the final restored image: (N, C, H, W) -> (N, C, H, W).

    Same arguments and state_dict as HINet, plus ``local_statistics``: ``None``
    (HINet as trained) or ``{"levels": [...], "windows": [...], "border": ...}``
    as :func:`napari_hinet.model.get_statistics` reports it, which gives the HIN
    blocks of those levels TLC local statistics (same parameters). H and W
    must be multiples of ``2**(depth-1)`` and at least twice that.
    """

    def __init__(self, *args, local_statistics: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if local_statistics:
            windows = dict(zip(local_statistics["levels"], local_statistics["windows"], strict=True))
            for path in (self.down_path_1, self.down_path_2):
                for level, block in enumerate(path):
                    if getattr(block, "use_hin", False) and level in windows:
                        channels = 2 * block.norm.num_features
                        border = local_statistics.get("border") or "clamp"
                        block.norm = LocalHalfInstanceNorm(channels, windows[level], border)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x)[-1]


def local_statistics(model: HINet) -> dict | None:
    """The TLC setting of ``model`` for :class:`HINetImage`, or ``None`` when it uses global statistics."""
    stats = get_statistics(model)
    return None if stats["stats"] == "global" else {k: v for k, v in stats.items() if k != "stats"}


def traceable(model: HINet) -> None:
    """Raise ``ValueError`` unless ``model`` can be traced to ONNX/TorchScript for every input size.

    TLC local statistics choose between a box filter and a global mean by the
    feature-map size, a branch that a trace freezes at the tracing size.
    """
    if local_statistics(model):
        raise ValueError(
            "This model uses TLC local statistics, whose windows depend on the input size in a way "
            "ONNX and TorchScript traces cannot keep. Export its bioimage.io package (pytorch_state_dict "
            "weights rebuild the windows), or switch it back with "
            "napari_hinet.model.set_statistics(model, 'global') first."
        )


def as_model(model: HINet | str | os.PathLike) -> HINet:
    """``model`` itself when it is a HINet (never moved or switched to eval), else :func:`load_model`."""
    return model if isinstance(model, HINet) else load_model(model)


def image_network(model: HINet) -> HINetImage:
    """A float32 CPU :class:`HINetImage` (eval mode) with ``model``'s weights and statistics."""
    net = HINetImage(**model.config, local_statistics=local_statistics(model))
    net.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    return net.eval()


def example_input(model: HINet, seed: int = 0) -> Tensor:
    """A (2, in_chn, 2*m, 3*m) float32 tensor in [0, 1] (m = ``model.size_multiple``)."""
    m = model.size_multiple
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, model.config["in_chn"], 2 * m, 3 * m, generator=gen)


def _relative_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    return [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.level > 0]


def _module_order(root: str) -> list[str]:
    """Module stems needed by ``root`` (itself last), each after the modules it imports."""
    order: list[str] = []

    def visit(stem: str, stack: tuple[str, ...]) -> None:
        if stem in order:
            return
        if stem in stack:
            raise RuntimeError(f"import cycle in napari_hinet.model: {' -> '.join((*stack, stem))}")
        tree = ast.parse((_MODEL_DIR / f"{stem}.py").read_text())
        for node in _relative_imports(tree):
            if node.level != 1 or not node.module:
                raise RuntimeError(f"model/{stem}.py: only 'from .module import name' can be bundled")
            visit(node.module, (*stack, stem))
        order.append(stem)

    visit(root, ())
    return order


def architecture_source() -> str:
    """The HINet model code as one importable Python file (callable ``HINet``).

    Rules, applied in this order:

    1. start from ``model/hinet.py`` and ``model/tlc.py`` and follow their
       ``from .x import y`` lines;
    2. emit each module once, after the modules it imports;
    3. drop the relative imports and ``from __future__ import annotations``
       (stated once at the top); keep everything else verbatim.
    """
    parts = [
        '"""HINet (Chen et al., CVPRW 2021) as used by napari-hinet, in one file.\n\n'
        "Generated from the modules of napari_hinet.model; needs only torch.\n"
        'Build with HINet(**kwargs) and load the state dict of the package."""\n',
        "from __future__ import annotations\n",
    ]
    stems = _module_order("hinet")
    stems += [s for s in _module_order("tlc") if s not in stems]  # LocalHalfInstanceNorm for HINetImage
    for stem in stems:
        text = (_MODEL_DIR / f"{stem}.py").read_text()
        tree = ast.parse(text)
        drop: set[int] = set()
        for node in tree.body:
            future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
            if future or (isinstance(node, ast.ImportFrom) and node.level > 0):
                drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        lines = [ln for i, ln in enumerate(text.splitlines(), start=1) if i not in drop]
        parts.append(f"\n# ---- napari_hinet/model/{stem}.py\n" + "\n".join(lines).strip() + "\n")
    parts.append("\n# ---- napari_hinet/exchange/network.py\n" + inspect.getsource(HINetImage))
    return "\n".join(parts)
