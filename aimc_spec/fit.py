"""Does the model fit the data? Torch-free checks of a spec against its inputs' shape.

A spec can pass its schema and still describe a network its data cannot feed: a cnn
whose conv+pool blocks shrink 8x8 digits below one pixel, a conv model on samples that
are not square images. The API runs these checks at submit time, where the dataset's
shape is known without loading it (a 422 naming the field); build_model runs the same
check, so a local `aimc run` and a worker name the same field the same way.
"""

from __future__ import annotations

import math

from aimc_spec.spec import JobSpec


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """The (channels, height, width) conv models see for samples of `input_shape` (flat
    F = s*s features become a 1 x s x s image, as datasets.as_images does); None if the
    samples cannot be images."""
    if len(input_shape) == 3:
        return input_shape  # type: ignore[return-value]
    if len(input_shape) == 2:
        return (1, *input_shape)  # type: ignore[return-value]
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        if side * side == input_shape[0]:
            return (1, side, side)
    return None


def fit_problem(spec: JobSpec, input_shape: tuple[int, ...]) -> tuple[str, str] | None:
    """(field, message) if the spec's model cannot take samples of `input_shape`."""
    m = spec.model
    if m.kind == "mlp":
        return None
    image = image_shape(input_shape)
    if image is None:
        return (
            "model.kind",
            f"conv models ({m.kind}) need image inputs; samples of shape {input_shape} are "
            "not square images; use kind: mlp",
        )
    _, h, w = image
    if m.kind == "cnn":
        fitting = 0
        while fitting < len(m.channels) and h >= 2 and w >= 2:
            h, w, fitting = h // 2, w // 2, fitting + 1
        if fitting < len(m.channels):
            return (
                "model.channels",
                f"{len(m.channels)} conv+pool blocks halve {image[1]}x{image[2]} images below "
                f"1x1; at most {fitting} fit: use {fitting} channel entries or fewer",
            )
    return None
