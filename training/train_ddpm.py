#!/usr/bin/env python
"""Train the healthy-tissue prior: an unconditional diffusers ``UNet2DModel`` with learned variance.

    accelerate launch training/train_ddpm.py --dataset_name ../luna16-slices --output_dir ddpm-healthy-64 \\
        --resolution 256 --crop_size 64

Nodules are only 1-4 px across in a whole slice shrunk to 64 px, so the prior learns from random 64-px
crops of the recipe's full-resolution (256-px) nodule-free slices; RePaint then inpaints around a
nodule at full resolution. Same options and guarantees as ``train_sdm.py`` (this is its ``--model ddpm``
mode with the healthy config and crops as defaults).
"""

import sys

from lung_diffusers.training.sdm_training import cli

if __name__ == "__main__":
    sys.exit(cli(model="ddpm"))
