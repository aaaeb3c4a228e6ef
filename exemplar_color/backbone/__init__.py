"""VGG-19 as the pipeline sees it: its layout and the two input conventions (:mod:`.spec`, no torch), the
published weight files and how one is found and read (:mod:`.weights`), the network by level name
(:mod:`.features`) and the one decision of levels, convention and file (:mod:`.choice`).

The spec's names load with the package (the command line's ``--help`` reads them without torch); the others
load when first asked for."""

from .spec import (CFG, CONV_LEVELS, DEFAULT_LEVELS, DEFAULT_VARIANT, LEVEL_CHANNELS, LEVEL_STRIDE, LEVELS,
                   PREPROCESSING, RELU_INDEX, VARIANTS, Preprocessing, Variant, levels_to)

_LATER = {"features": ("VGG19Features", "Precision", "MIXED_FROM"),
          "weights": ("WEIGHTS", "KNOWN_WEIGHTS", "WeightsRecord", "identify_weights", "choose_variant",
                      "guess_variant", "resolve_weights", "load_state_dict"),
          "choice": ("BackboneChoice", "TrainedOn", "resolve_backbone")}

__all__ = ["CFG", "CONV_LEVELS", "DEFAULT_LEVELS", "DEFAULT_VARIANT", "LEVEL_CHANNELS", "LEVEL_STRIDE", "LEVELS",
           "PREPROCESSING", "RELU_INDEX", "VARIANTS", "Preprocessing", "Variant", "levels_to",
           *(name for names in _LATER.values() for name in names)]


def __getattr__(name: str):
    if name in _LATER["features"]:
        from . import features as module
    elif name in _LATER["weights"]:
        from . import weights as module
    elif name in _LATER["choice"]:
        from . import choice as module
    else:
        raise AttributeError(f"module 'exemplar_color.backbone' has no attribute {name!r}")
    return getattr(module, name)
