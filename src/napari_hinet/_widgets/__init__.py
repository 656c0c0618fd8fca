"""napari dock widgets (Qt/magicgui): Denoise, Deblur, Derain and Fine-tune.

This is the only package of napari-hinet that imports Qt. The widgets are thin
callers of the GUI-free engine (:mod:`napari_hinet.engine`) and training code
(:mod:`napari_hinet.training`); the manifest (``napari.yaml``) points at the
factories in :mod:`.restore_widget` and :mod:`.finetune_widget`.
"""
