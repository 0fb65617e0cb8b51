#!/usr/bin/env python
"""Evaluate mask-free anomaly maps (AnoDDPM-style, healthy prior) on held-out patients: pixel AUROC and Dice.

    python training/evaluate_anomaly_maps.py --pipeline pipelines/lung-ddpm-prior-64 \
        --dataset_name ../train-runs/data/luna16-mini-all --noise_levels 0.1 0.25 0.5 --output anomaly-eval

``--help`` lists the options; the evaluation is :mod:`lung_diffusers.inpainting.anomaly_map_evaluation` (its
docstring tells what is scored and written), which tests and other tools use instead of this file.
"""

import sys

from lung_diffusers.inpainting.anomaly_map_evaluation import cli

if __name__ == "__main__":
    sys.exit(cli())
