"""Image-level tagging: the tiles a pathologist tags (tile folders, slide grids), training from the tags, and
which tile to tag or correct next. No Qt here; ``gui/tag_widget.py`` is the viewer's face of it."""
