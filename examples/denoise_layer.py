"""Denoise a napari layer from a script, without the widget.

Opens napari with the plugin's noisy fluorescence sample, runs the plugin's
``denoise`` command on the noisy layer (the same engine and output metadata as
the Denoise widget, but blocking), adds the result and prints its provenance.

    python examples/denoise_layer.py                      # opens a napari window
    python examples/denoise_layer.py --screenshot out.png # saves a screenshot and exits
    python examples/denoise_layer.py --model hinet-denoise-fluo --device cpu

On a headless machine prefix it with
``xvfb-run -a -s "-screen 0 1280x1024x24"``.
"""

from __future__ import annotations

import argparse
import json

import napari
from npe2 import PluginManager


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="registry name or weights file (default: the bundled one)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    parser.add_argument("--screenshot", default=None, help="save a screenshot here and exit")
    args = parser.parse_args()

    viewer = napari.Viewer()
    viewer.open_sample("napari-hinet", "noisy_fluorescence")  # adds "nuclei (clean)" and "nuclei (noisy)"
    noisy = viewer.layers["nuclei (noisy)"]

    # Run the manifest command "napari-hinet.denoise" on the layer. In napari's
    # console the shorter form works too:
    #     from napari_hinet.layers import denoise
    #     viewer.add_image(*denoise(viewer.layers["nuclei (noisy)"])[:2])
    data, kwargs, layer_type = PluginManager.instance().commands.execute(
        "napari-hinet.denoise",
        args=(noisy,),
        kwargs={"model": args.model, "device": args.device},
    )
    restored = viewer.add_layer(napari.layers.Layer.create(data, kwargs, layer_type))
    print(f"added {restored.name!r}: {data.shape} {data.dtype}")
    print(json.dumps(restored.metadata["napari_hinet"], indent=2))

    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
    else:
        napari.run()


if __name__ == "__main__":
    main()
