#!/usr/bin/env python
"""Measure a trained LungSDMPipeline on held-out masks: lung Dice and median HU, beside the real slices.

    python training/evaluate_fidelity.py --pipeline ../train-runs/sdm-64/pipeline \
        --dataset_name ../train-runs/data/luna16-mini-all --output fidelity-sdm-64 --update_card

``--help`` lists the options; the evaluation is :mod:`lung_diffusers.training.fidelity_evaluation` (its docstring
tells what is measured and written), which tests and other tools use instead of this file.
"""

import sys

from lung_diffusers.training.fidelity_evaluation import cli

if __name__ == "__main__":
    sys.exit(cli())
