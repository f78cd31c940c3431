from pathlib import Path

import pytest

from inspect_core.data.annotations import AnnotationError, DefectObject, check_box, normalise_split, sort_objects, source_key_for


def test_check_box_clips_rounding_noise_and_rejects_real_errors() -> None:
    assert check_box((-0.4, 0, 100.5, 50), 100, 50, "f.txt", "line 1") == (0.0, 0.0, 100.0, 50.0)
    with pytest.raises(AnnotationError, match="outside the 100x50 image") as info:
        check_box((10, 10, 130, 20), 100, 50, "f.txt", "line 3", "bbox")
    assert info.value.file == "f.txt" and info.value.location == "line 3" and info.value.field == "bbox"
    with pytest.raises(AnnotationError, match="zero or negative area"):
        check_box((10, 10, 10, 20), 100, 50, "f.txt", "line 4")


def test_source_key_groups_augmented_copies() -> None:
    assert source_key_for(Path("flipped_h_fabric_00001.jpg")) == "fabric_00001"
    assert source_key_for(Path("flipped_v_flipped_h_a.png")) == "a"
    assert source_key_for(Path("DSC03012_JPG.rf.41248adddabc40ca29156582573ce622.jpg")) == "DSC03012"


def test_sort_objects_is_reading_order() -> None:
    a = DefectObject("stain", (50, 10, 60, 20))
    b = DefectObject("hole", (5, 10, 15, 20))
    c = DefectObject("knot", (0, 40, 5, 45))
    assert sort_objects([c, a, b]) == (b, a, c)


def test_split_aliases() -> None:
    assert normalise_split("val") == "valid" and normalise_split("Train") == "train" and normalise_split("images") is None
