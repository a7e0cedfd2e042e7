"""napari-wsss: weakly supervised tissue segmentation of H&E images in napari.

Importing the package loads neither torch nor Qt; napari finds the plugin through ``napari.yaml``.
"""

__version__ = "0.1.0"
