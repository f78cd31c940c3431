"""The default synthetic style is frozen: for a seed it gives the pixels, labels and VOC bytes it gave before styles existed.

The digests were computed with the generator at git commit 943553b, before the randomised and held-out
styles were added (its tree exported with ``git archive`` and the same ``_digest`` run there). The
shipped sample data is a second oracle: ``make sample-data``'s command must reproduce its files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from inspect_core.data.synthetic_fabric import SAMPLE_DATA_SEED, SyntheticSample, generate_sample, write_voc_dataset

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data" / "fabric_voc"

# (seed, index, size, max_defects): sha256 of the image bytes and the repr of (objects, caption, texture)
DIGESTS = {
    (3, 7, 512, 4): "7499c792e63afcfff791b43645ec8b5141af49c8dea825eb221eafd2b523c6a6",
    (11, 0, 256, 4): "9cc0ee27dd26507f7ae65e8382e9790c7e75216724ccd843699663f27da517aa",
    (11, 1, 256, 4): "76a38e9e6a7731f6d0435b4735685dc9b22472eca619c95eefcd948c9b4231f8",
    (11, 2, 256, 0): "8b08de7696ed6e312b89158779cf73990db08afd1477db73f2504e53509e2b13",
    (0, 5, 96, 4): "3533515e6d16b5554f249ed887da621faf014c09032049645534b4af712ad29a",
    (4294967295, 1000000, 64, 4): "294f0238a89cc426dc3dc7007b636e9ccf333da664ec2d64108362c4dbbca196",
    (7, 3, 384, 4): "bed5c51b1dec5a5c095460811ca3a094e71883ea6aff60c4645083603ff70ed6",
}
VOC_DIGEST = "686bdb48f27e2c517b8242e72b8c28311711e984b2ce93ef514ea1ed75d677e6"


def _digest(sample: SyntheticSample) -> str:
    return hashlib.sha256(sample.image.tobytes() + repr((sample.objects, sample.caption, sample.texture)).encode()).hexdigest()


@pytest.mark.parametrize(("seed", "index", "size", "max_defects"), list(DIGESTS))
def test_default_style_gives_what_it_always_gave(seed: int, index: int, size: int, max_defects: int) -> None:
    sample = generate_sample(seed, index, size, max_defects=max_defects)
    assert _digest(sample) == DIGESTS[(seed, index, size, max_defects)]
    assert _digest(generate_sample(seed, index, size, max_defects=max_defects, style="default")) == _digest(sample)


def test_voc_writer_gives_the_same_bytes(tmp_path: Path) -> None:
    write_voc_dataset(tmp_path / "voc", count=3, seed=7, size=128, start_index=2)
    digest = hashlib.sha256()
    for path in sorted((tmp_path / "voc").iterdir()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == VOC_DIGEST


def test_sample_data_is_reproduced_byte_for_byte(tmp_path: Path) -> None:
    if not SAMPLE_DATA.is_dir():
        pytest.skip("sample_data/fabric_voc is not in this checkout")
    out = tmp_path / "fabric_voc"
    makefile = (SAMPLE_DATA.parents[1] / "Makefile").read_text()
    assert f"--out sample_data/fabric_voc --count 48 --seed {SAMPLE_DATA_SEED} --size 384" in makefile  # pretraining refuses that seed
    write_voc_dataset(out, count=2, seed=SAMPLE_DATA_SEED, size=384)
    for name in ("fabric_00000.jpg", "fabric_00000.xml", "fabric_00001.jpg", "fabric_00001.xml"):
        assert (out / name).read_bytes() == (SAMPLE_DATA / name).read_bytes(), name
