"""The headless engine: reading scans, the U-Net, training and inference.

Nothing in this package imports napari or Qt, so it runs on servers and in the CLI.
"""
