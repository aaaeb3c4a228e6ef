"""Evaluation harness behind ``exemplar-color evaluate``: decolorize, colorize back, measure, report.

Each colour photo (the ground truth) is turned into its gray version (its own CIE Lab lightness shown
as a neutral sRGB gray, in float, so the colorizer gets exactly the ground truth's L), colorized with a
reference chosen by one of three modes, and compared with the ground truth:

* ``self-transform``: the reference is a randomly similarity-transformed copy of the ground truth
  (rotation, scale, shift; seeded per image name), the known-correspondence case: a perfect matcher
  recovers the ground truth wherever the copy overlaps it.
* ``given``: pairs files with lines ``target reference [anything]``, paths relative to the file's folder.
  A target that is already gray has no ground truth: its row carries only no-reference figures
  (colourfulness), and the means are over the images that have one.
* ``auto``: the reference is the best match from the Colorizer's gallery index.

Every image is scored for each method on the same correspondence, so a report says what each stage adds:

* ``result``: the full pipeline (``Colorizer.colorize``'s image, with the Colorizer's head);
* ``analogy``: the analogy head on the same matches, when the pipeline's head is the trained network;
* ``warped_ab``: the target's L with the raw warped reference ab (``result.warped_ab``), bilinearly
  upsampled to full size — what the correspondence alone gives, before the head and edge-aware upsampling;
* ``reinhard``: Reinhard-style global Lab statistics transfer from the same reference
  (:func:`exemplar_color.baselines.reinhard_transfer`); on a gray target this is one global tint.

Unreadable images (target or reference) are recorded under ``failed`` with the reason; the run goes on.
Outputs (``report.json``, ``report.md``, ``contact_sheet.png``) are written atomically.

The package: :mod:`.protocol` (inputs, running, summary), :mod:`.report` (JSON, Markdown, versions,
:func:`run_evaluation`), :mod:`.sheet` (the contact sheet).
"""

from .protocol import (METHODS, MODES, EvalItem, Evaluation, decolorize, evaluate, given_items, items_from_source,
                       read_pairs, summarize)
from .report import METHOD_LABELS, methods_of, render_markdown, run_evaluation, versions, write_report
from .sheet import SHEET_ROWS, contact_sheet, sheet_sample

__all__ = ["MODES", "METHODS", "METHOD_LABELS", "SHEET_ROWS", "EvalItem", "Evaluation", "items_from_source",
           "read_pairs", "given_items", "decolorize", "evaluate", "summarize", "methods_of", "versions",
           "render_markdown", "contact_sheet", "sheet_sample", "write_report", "run_evaluation"]
