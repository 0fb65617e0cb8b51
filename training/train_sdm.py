#!/usr/bin/env python
"""Train a lung-CT Semantic Diffusion Model (or, with ``--model ddpm``, the unconditional healthy prior).

    accelerate launch training/train_sdm.py --dataset_name ../luna16-slices --output_dir sdm-lung-64

``python training/train_sdm.py --help`` lists the options. The loop, its checkpoints and the final pipeline
folder are :mod:`lung_diffusers.training.sdm_training` (its docstring tells how); this file only runs it, so
tests and other tools use the package, never this file.
"""

import sys

from lung_diffusers.training.sdm_training import cli

if __name__ == "__main__":
    sys.exit(cli())
