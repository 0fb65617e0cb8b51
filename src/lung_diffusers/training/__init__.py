"""Training: what the scripts in ``training/`` run, so that tests and other tools use it from the package.

- :mod:`.sdm_training`: the loop of ``train_sdm.py`` / ``train_ddpm.py`` (SDM, healthy prior, upscaler), its
  options (:mod:`.sdm_options`), model and noise schedule (:mod:`.sdm_model`), validation grids
  (:mod:`.validation_grids`) and final pipeline folder (:mod:`.pipeline_folder`).
- :mod:`.pipeline_export`: ``export_pipeline.py``, a checkpoint's EMA weights as a hub-ready pipeline folder.
- :mod:`.fidelity_evaluation`: ``evaluate_fidelity.py``, a trained SDM's lung Dice and median HU on held-out
  masks, written into its model card.
- :mod:`.prior_segmentation`: ``train_prior_segmentation.py``, the segmentation U-Nets with and without the
  anomaly-map prior, trained and compared.
- :mod:`.diffusion_loss`: the improved-DDPM hybrid loss (epsilon MSE plus the variational bound).
- :mod:`.slice_data`: the recipe's slice dataset as training batches (resizing, crops, flips, the step's batches);
  loading and checking it is :mod:`lung_diffusers.data.slice_dataset`.
- :mod:`.checkpoints`: atomic accelerate checkpoints, their rotation and ``--resume_from_checkpoint``.
- :mod:`.model_card`: the training card (``training.json``, ``fidelity.json``) rendered into ``README.md``.
- :mod:`.script_cli`: the scripts' exit statuses and one-line errors.

``evaluate_anomaly_maps.py`` runs :mod:`lung_diffusers.inpainting.anomaly_map_evaluation` (it trains nothing).
The figures the evaluations report are :mod:`lung_diffusers.evaluation` (:mod:`.fidelity` is their deprecated old
path). This package is the top layer: nothing else in ``src/`` or the Space imports it
(``tests/training/test_training_imports.py`` checks).
"""
