import numpy as np
from PIL import Image

from napari_wsss.cli import main


def test_cli_train_evaluate_predict(tiny_dataset, tmp_path, capsys):
    model = tmp_path / "models" / "cli-sshr"
    rc = main(["train", "--method", "sshr", "--data", str(tiny_dataset), "--out", str(model), "--epochs", "1",
               "--batch-size", "8", "--input-size", "64", "--threads", "2", "--set", "kernel_size=3", "--no-eval"])
    assert rc == 0 and (model / "card.json").is_file()
    assert main(["evaluate", "--model", str(model), "--data", str(tiny_dataset)]) == 0
    assert "mIoU" in capsys.readouterr().out
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(tiny_dataset / "test" / "img"), "-o", str(out),
                 "--confidence"]) == 0
    masks = sorted(out.glob("*[0-9].png"))
    assert len(masks) == 4
    with Image.open(masks[0]) as im:
        assert im.mode == "P" and np.asarray(im).max() <= 4
    assert main(["train", "--method", "nope", "--data", str(tiny_dataset), "--out", str(tmp_path / "x")]) == 1
    assert "sshr" in capsys.readouterr().err
