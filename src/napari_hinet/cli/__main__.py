"""``python -m napari_hinet.cli``: the same as the ``napari-hinet`` command."""

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
