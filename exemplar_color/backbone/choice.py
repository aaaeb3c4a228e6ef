"""The backbone decided once: which VGG-19 levels and which preprocessing convention, from what the caller
asked for, a model's record (the levels and convention it was trained on), the weight file, or the defaults
(:data:`~.spec.DEFAULT_LEVELS`, :data:`~.spec.DEFAULT_VARIANT`). A :class:`~exemplar_color.Colorizer` calls
:func:`resolve_backbone` once and builds its :class:`~.features.VGG19Features` from the answer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..artifacts import refuse_differences
from ..errors import ConfigMismatchError
from .spec import DEFAULT_LEVELS, DEFAULT_VARIANT, Variant
from .weights import choose_variant

__all__ = ["BackboneChoice", "TrainedOn", "resolve_backbone"]


class TrainedOn(Protocol):
    """A model's record of its backbone (a network config: ``levels``, ``variant``)."""

    levels: Sequence[str]
    variant: str


@dataclass(frozen=True)
class BackboneChoice:
    """What a backbone is built from: the weight file as given (``None``: ``$EXEMPLAR_COLOR_VGG_WEIGHTS``, the
    cache or the download of this variant's published file), the convention, the levels (deepest first)."""

    weights: str | os.PathLike | None
    variant: Variant
    levels: tuple[str, ...]


def resolve_backbone(weights: str | os.PathLike | None = None, variant: str | None = None,
                     levels: Sequence[str] | None = None, *, model: str | os.PathLike | None = None,
                     trained_on: TrainedOn | None = None) -> BackboneChoice:
    """Levels: asked for, else the model's, else :data:`~.spec.DEFAULT_LEVELS`. Convention: asked for, else the
    model's, else a recognised weight file's own (an unrecognised one's as its first layer shows it), else
    :data:`~.spec.DEFAULT_VARIANT`. An explicit choice that contradicts the model (``trained_on``, read from
    the file ``model``), or a recognised weight file that contradicts either, is refused naming both: the
    network only understands similarity maps of the levels and backbone it was trained on."""
    model_variant = None
    if trained_on is not None:
        refuse_differences(str(model), {"levels": trained_on.levels, "vgg_variant": trained_on.variant},
                           {"levels": levels, "vgg_variant": variant}, have_name="the model was trained with",
                           want_name="asked for", built="the model only understands the levels and VGG-19 "
                           "features it was trained on", fix="leave them unset to use the model's, or use "
                           "model='analogy'")
        levels, model_variant = tuple(trained_on.levels), trained_on.variant
    own = choose_variant(weights, variant, default=None)  # refuses an explicit choice the file contradicts
    if model_variant is not None and own is not None and own != model_variant:
        raise ConfigMismatchError(f"{model}: the model was trained on {model_variant} VGG-19 features, but the "
                                  f"weight file is the {own} VGG-19; use a {model_variant} weight file, or "
                                  f"model='analogy' (--model analogy) with this one")
    return BackboneChoice(weights, model_variant or own or DEFAULT_VARIANT,  # type: ignore[arg-type]
                          tuple(levels or DEFAULT_LEVELS))
