#!/usr/bin/env python
"""Prior-aware nodule segmentation (the thesis' module 3): train a small MONAI U-Net on slice + prior, and the same
U-Net on the slice alone, then compare them on held-out patients with bootstrap confidence intervals.

    accelerate launch training/train_prior_segmentation.py --dataset ../luna16-slices \
        --prior_pipeline pipelines/lung-ddpm-prior-64 --output_dir prior-segmentation

``--help`` lists the options; the run is :mod:`lung_diffusers.training.prior_segmentation` (its docstring tells
what is trained, compared and written), which tests and other tools use instead of this file.
"""

import sys

from lung_diffusers.training.prior_segmentation import cli

if __name__ == "__main__":
    sys.exit(cli())
