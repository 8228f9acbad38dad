"""Thin napari front ends over `napari_lgg_unet.engine`: every computation happens in the engine, in a worker thread."""
