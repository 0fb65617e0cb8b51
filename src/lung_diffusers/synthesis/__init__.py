"""Dataset padding at scale: a checkpoint and a mask dataset in, a labelled synthetic ``datasets`` dataset out.

``lung-diffusers synthesize`` (:mod:`.commands`) runs :func:`synthesize` (:mod:`.runner`), on one process or many
under accelerate. The pieces, one module each:

* :mod:`.settings`: the request, the settings that decide the rows, the ``--masks`` spec.
* :mod:`.checkpoint`: the generating checkpoint and a cascade's second stage (``--upscaler``: images at its
  size, through both stages): folder or Hub commit, weights sha256. :mod:`.schedulers`: the
  ``--scheduler`` choices, the SDM samplers of :mod:`lung_diffusers.scheduler_registry`.
* :mod:`.mask_source`: loading and checking the mask dataset. :mod:`.mask_plan`: which mask and which placed
  nodule each image gets, from (seed, global index).
* :mod:`.generation`: one global batch -> rows. :mod:`.regeneration`: rows -> the same bytes again.
* :mod:`.dataset_files`: the folder layout, batch shards and the merge. :mod:`.summary`, :mod:`.card`,
  :mod:`.contact_sheet`, :mod:`.hub`: what a finished dataset shows and where it goes.

Names are imported on first use, so ``lung-diffusers --help`` does not load torch.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "SynthesisRequest": ".settings",
    "SynthesisSettings": ".settings",
    "MaskSpec": ".settings",
    "SynthesisResult": ".runner",
    "synthesize": ".runner",
    "finalize": ".runner",
    "regenerate_row": ".regeneration",
    "regenerate_batch": ".regeneration",
    "rebuild_label_map": ".regeneration",
    "push_synthetic_dataset": ".hub",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
