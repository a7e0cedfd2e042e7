"""Where the tests find the real GlaS images, and the one skip they give without them.

The images stay in the workplace's shared data (../shared/data/glas beside the checkout, see its README); tests
copy what they need into their temporary folder and never into the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas" / "train"


def require_glas(*paths: Path) -> None:
    """Skip, saying why and where the test does run, unless every path (default: the GlaS folder) exists."""
    missing = [p for p in (paths or (GLAS,)) if not Path(p).exists()]
    if missing:
        pytest.skip(f"real GlaS images not found ({missing[0]}): this test runs where the workplace's shared data "
                    "sits beside the checkout (../shared/data/glas, see its README), as on the developers' "
                    "machines; a checkout without it skips")


def glas_copy(folder: Path, names: tuple[str, ...]) -> Path:
    """``folder`` made, holding copies of these GlaS training images (``train_1.png`` ...): a user's own folder."""
    import shutil

    require_glas(*(GLAS / "images" / n for n in names))
    folder.mkdir(parents=True)
    for n in names:
        shutil.copy(GLAS / "images" / n, folder / n)
    return folder
