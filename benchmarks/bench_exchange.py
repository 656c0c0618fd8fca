"""Model exchange: export times and how closely ONNX / TorchScript reproduce torch float32.

For every bundled model: time to write the ONNX file, the TorchScript file and the
bioimage.io package; max |onnxruntime - torch| and max |torchscript - torch| on
random [0, 1] inputs of 256 x 256 and 512 x 384 (network units); and, for
``--check MODEL``, the time of bioimageio.core's ``test_model`` on its package.
One run writes benchmarks/results/exchange.json (machine and load included).

    python benchmarks/bench_exchange.py [--check hinet-denoise-fluo]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _engine_common import load_average, print_table, write_json

from napari_hinet import list_models, load_model
from napari_hinet.exchange.bioimageio import export_bioimageio
from napari_hinet.exchange.onnx import export_onnx
from napari_hinet.exchange.torchscript import export_torchscript

SHAPES = [(1, 256, 256), (1, 512, 384)]


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - t0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", default="hinet-denoise-fluo", help="model whose package is tested")
    args = parser.parse_args()
    import onnxruntime as ort

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for info in [m for m in list_models() if m.kind == "bundled"]:
            model = load_model(info.name)
            c = model.config["in_chn"]
            onnx_path, t_onnx = _timed(export_onnx, model, Path(tmp) / f"{info.name}.onnx")
            ts_path, t_ts = _timed(export_torchscript, model, Path(tmp) / f"{info.name}.pt")
            zip_path, t_zip = _timed(export_bioimageio, model, Path(tmp) / f"{info.name}.zip")
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            scripted = torch.jit.load(str(ts_path))
            err_onnx = err_ts = 0.0
            for n, h, w in SHAPES:
                x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(h))
                with torch.no_grad():
                    ref = model(x)[1]
                    err_ts = max(err_ts, float((scripted(x) - ref).abs().max()))
                got = session.run(["output"], {"input": x.numpy()})[0]
                err_onnx = max(err_onnx, float(np.abs(got - ref.numpy()).max()))
            row = {
                "model": info.name,
                "onnx_export_s": t_onnx,
                "torchscript_export_s": t_ts,
                "bioimageio_export_s": t_zip,
                "package_mb": round(zip_path.stat().st_size / 1e6, 2),
                "max_abs_onnx": float(f"{err_onnx:.3g}"),
                "max_abs_torchscript": float(f"{err_ts:.3g}"),
            }
            if info.name == args.check:
                from bioimageio.core import test_model

                summary, row["test_model_s"] = _timed(test_model, zip_path)
                row["test_model"] = summary.status
            rows.append(row)
            print(row, "load", load_average())
    columns = list(rows[0]) + ["test_model_s", "test_model"]
    print_table(rows, list(dict.fromkeys(columns)))
    write_json("exchange", {"shapes": SHAPES, "rows": rows})


if __name__ == "__main__":
    main()
