import json
from pathlib import Path

import pytest

from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
from inspect_core.data.annotations import source_key_for
from inspect_core.data.dataset_builder import assign_splits, build_dataset
from inspect_core.data.dataset_stats import built_dataset_stats
from inspect_core.data.florence_tasks import caption_for
from inspect_core.data.importers import import_dataset
from tests.conftest import write_image

XML = """<annotation><filename>{name}.jpg</filename>
<size><width>96</width><height>64</height><depth>3</depth></size>{caption}
<object><name>{label}</name><description>{label} at the edge</description>
<bndbox><xmin>5</xmin><ymin>10</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def _voc_set(root: Path, count: int = 20) -> Path:
    for index in range(count):
        name = f"img_{index:03d}"
        write_image(root / f"{name}.jpg", 96, 64, seed=index, rects=[(5, 10, 40, 30)])
        caption = "<caption>plain fabric with a hole at the edge</caption>" if index % 2 else ""
        (root / f"{name}.xml").write_text(XML.format(name=name, caption=caption, label="hole" if index % 3 else "stain"))
    return root


def _build(tmp_path: Path, augment: bool = True, **dataset: object):
    result = import_dataset(_voc_set(tmp_path / "src"))
    out = tmp_path / "out"
    summary = build_dataset(result, out, DatasetSection(**dataset), AugmentSection(offline=augment))
    return result, out, summary


def test_layout_manifest_and_counts(tmp_path: Path) -> None:
    _result, out, summary = _build(tmp_path)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["tasks"] == ["od", "dense", "grounding"] and manifest["order"] == "sequential"
    assert manifest["classes"] == ["hole", "stain"]
    sources = {s: summary.splits[s].source_images for s in ("train", "valid", "test")}
    assert sources == {"train": 16, "valid": 2, "test": 2}
    assert summary.splits["train"].images == 16 * 3  # original + two flips
    assert summary.splits["valid"].images == 2  # evaluation splits are never augmented
    for split in ("train", "valid", "test"):
        lines = (out / split / "annotations.jsonl").read_text().splitlines()
        for line in lines:
            assert (out / split / json.loads(line)["image"]).is_file()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_records_are_in_task_blocks(tmp_path: Path) -> None:
    _result, out, _summary = _build(tmp_path)
    prefixes = [json.loads(line)["prefix"] for line in (out / "train/annotations.jsonl").read_text().splitlines()]
    tasks = [p.split(">")[0] + ">" for p in prefixes]
    assert tasks == ["<OD>"] * 48 + ["<DENSE_REGION_CAPTION>"] * 48 + ["<CAPTION_TO_PHRASE_GROUNDING>"] * 48


def test_no_leakage_between_splits(tmp_path: Path) -> None:
    _result, out, _summary = _build(tmp_path)
    keys = {split: {source_key_for(p) for p in (out / split).glob("*.jpg")} for split in ("train", "valid", "test")}
    assert not keys["train"] & keys["valid"] and not keys["train"] & keys["test"] and not keys["valid"] & keys["test"]


def test_augmented_copies_of_a_source_share_its_split(tmp_path: Path) -> None:
    result = import_dataset(_voc_set(tmp_path / "src", 30))
    for seed in range(5):
        split_of: dict[str, str] = {}
        for image in assign_splits(result.images, SplitRatios(), seed):
            assert split_of.setdefault(image.source_key, image.split) == image.split


def test_round_trip_through_florence_jsonl(tmp_path: Path) -> None:
    result, out, _summary = _build(tmp_path, augment=False)
    original = {i.image_path.name: i for i in result.images}
    restored = import_dataset(out).images
    assert len(restored) == len(original)
    for image in restored:
        source = original[image.image_path.name]
        assert [o.label for o in image.objects] == [o.label for o in source.objects]
        assert [o.description for o in image.objects] == [o.description for o in source.objects]
        for a, b in zip(image.objects, source.objects):
            assert a.box == pytest.approx(b.box, abs=96 / 1000)
        assert image.caption == caption_for(source)


def test_flipped_labels_match_flipped_pixels(tmp_path: Path) -> None:
    _result, out, _summary = _build(tmp_path)
    restored = {i.image_path.name: i for i in import_dataset(out).images}
    flipped = restored["flipped_h_img_001.jpg"]
    (obj,) = flipped.objects
    assert obj.box == pytest.approx((96 - 40, 10, 96 - 5, 30), abs=0.1)
    flipped = restored["flipped_v_img_001.jpg"]
    assert flipped.objects[0].box == pytest.approx((5, 64 - 30, 40, 64 - 10), abs=0.1)


def test_failed_build_leaves_nothing_and_existing_output_is_kept(tmp_path: Path) -> None:
    result = import_dataset(_voc_set(tmp_path / "src", 12))
    out = tmp_path / "out"
    build_dataset(result, out, DatasetSection(), AugmentSection())
    before = sorted(p.name for p in (out / "train").iterdir())
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_dataset(result, out, DatasetSection(), AugmentSection())
    result.images[3].image_path.unlink()  # disappears mid-build
    with pytest.raises(FileNotFoundError):
        build_dataset(result, out, DatasetSection(workers=1), AugmentSection(), overwrite=True)
    assert sorted(p.name for p in (out / "train").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_skip_report_and_stats(tmp_path: Path) -> None:
    src = _voc_set(tmp_path / "src", 10)
    (src / "img_004.xml").write_text(XML.format(name="img_004", caption="", label="hole").replace("<xmax>40", "<xmax>400"))
    result = import_dataset(src, skip_invalid=True)
    out = tmp_path / "out"
    summary = build_dataset(result, out, DatasetSection(tasks=["od"], order="interleaved"), AugmentSection())
    (skipped,) = json.loads((out / "skipped.json").read_text())
    assert skipped["file"].endswith("img_004.xml") and skipped["field"] == "bndbox"
    stats = built_dataset_stats(out)
    assert {s: v.images for s, v in stats.items()} == {s: v.images for s, v in summary.splits.items()}
    assert sum(v.images for v in stats.values()) == 9
    assert all(set(v.records) <= {"od"} for v in stats.values())
    assert json.loads((out / "dataset.json").read_text())["order"] == "interleaved"


def test_real_roboflow_set_builds(real_fabric: Path, tmp_path: Path) -> None:
    result = import_dataset(real_fabric / "roboflow_fabric_yolo")
    summary = build_dataset(result, tmp_path / "out", DatasetSection(), AugmentSection(offline=True))
    assert sum(s.source_images for s in summary.splits.values()) == 22
    stats = built_dataset_stats(tmp_path / "out")
    assert sum(sum(s.objects.values()) for s in stats.values()) == sum(sum(s.objects.values()) for s in summary.splits.values())
