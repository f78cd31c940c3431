from pathlib import Path

import torch

from inspect_core.data.annotations import AnnotatedImage, DefectObject
from inspect_core.model.cell_detection_head import CellDetectionHead, cell_loss, cell_targets, image_cell_states


def test_targets_mark_the_cell_holding_each_centre() -> None:
    image = AnnotatedImage(Path("a.jpg"), 256, 256, (DefectObject("hole", (0, 0, 64, 64)), DefectObject("knot", (200, 100, 210, 110))))
    labels, boxes = cell_targets([image], ["hole", "stain", "knot"], grid=8)
    assert labels.shape == (1, 64)
    assert labels[0, 1 * 8 + 1] == 0  # hole centre (32, 32) -> row 1, col 1
    assert labels[0, 3 * 8 + 6] == 2  # knot centre (205, 105) -> row 3, col 6
    assert (labels == 3).sum() == 62  # the rest is background
    assert torch.allclose(boxes[0, 9], torch.tensor([0.0, 0.0, 0.25, 0.25]))


def test_head_learns_the_targets() -> None:
    torch.manual_seed(0)
    states = torch.randn(2, 66, 16)
    image = AnnotatedImage(Path("a.jpg"), 256, 256, (DefectObject("hole", (0, 0, 64, 64)),))
    labels, boxes = cell_targets([image, image], ["hole"], grid=8)
    head = CellDetectionHead(16, 1)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss = cell_loss(*head(image_cell_states(states, 8)), labels, boxes)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 5
