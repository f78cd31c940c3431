"""Auxiliary per-cell detection loss: a training aid that stops a small Florence-2 collapsing to a prior.

Trained from scratch, a tiny Florence-2 learns to emit the same boxes for every image: the decoder
can lower its loss from its own previous tokens and ignore the image. A linear head on the multimodal
encoder's image-token outputs, asked to predict for each image cell the class of the object whose
centre falls in it (or background) and that object's box, forces the encoder to carry where and what
the defects are. The head is dropped after training: the saved model is a plain Florence-2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from inspect_core.data.annotations import AnnotatedImage

BACKGROUND_WEIGHT = 0.1  # most cells are empty; without down-weighting the head predicts background only
BOX_LOSS_WEIGHT = 5.0


class CellDetectionHead(nn.Module):
    def __init__(self, d_model: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.proj = nn.Linear(d_model, num_classes + 1 + 4)

    def forward(self, cell_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (background last) and normalised boxes per cell."""
        out = self.proj(cell_states)
        return out[..., : self.num_classes + 1], out[..., self.num_classes + 1 :].sigmoid()


def cell_targets(images: Sequence[AnnotatedImage], classes: Sequence[str], grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and cell (row-major): class index (``len(classes)`` = background) and normalised box."""
    labels = torch.full((len(images), grid * grid), len(classes), dtype=torch.long)
    boxes = torch.zeros((len(images), grid * grid, 4))
    index = {name: i for i, name in enumerate(classes)}
    for b, image in enumerate(images):
        # Larger objects first, so a small object centred in the same cell keeps the cell.
        for obj in sorted(image.objects, key=lambda o: -(o.box[2] - o.box[0]) * (o.box[3] - o.box[1])):
            x1, y1, x2, y2 = obj.box
            norm = torch.tensor([x1 / image.width, y1 / image.height, x2 / image.width, y2 / image.height])
            col = min(int((norm[0] + norm[2]) / 2 * grid), grid - 1)
            row = min(int((norm[1] + norm[3]) / 2 * grid), grid - 1)
            labels[b, row * grid + col] = index[obj.label]
            boxes[b, row * grid + col] = norm
    return labels, boxes


def cell_loss(logits: torch.Tensor, predicted_boxes: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    num_classes = logits.shape[-1] - 1
    weight = torch.ones(num_classes + 1, device=logits.device)
    weight[-1] = BACKGROUND_WEIGHT
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=weight)
    positive = labels < num_classes
    if positive.any():
        loss = loss + BOX_LOSS_WEIGHT * F.l1_loss(predicted_boxes[positive], boxes[positive])
    return loss


def image_cell_states(encoder_states: torch.Tensor, grid: int) -> torch.Tensor:
    """The encoder outputs of the grid cells: image token 0 is the pooled token, then row-major cells."""
    return encoder_states[:, 1 : 1 + grid * grid]
