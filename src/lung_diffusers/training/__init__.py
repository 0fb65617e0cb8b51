"""Pieces of the training scripts in ``training/`` that tests and other tools reuse.

- :mod:`.diffusion_loss`: the improved-DDPM hybrid loss (epsilon MSE plus the variational bound).
- :mod:`.slice_data`: the recipe's slice dataset as training batches (checks, resizing, crops, flips).
- :mod:`.checkpoints`: atomic accelerate checkpoints, their rotation and ``--resume_from_checkpoint``.
- :mod:`.script_cli`: the scripts' exit statuses and one-line errors.
"""
