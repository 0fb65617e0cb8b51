#!/usr/bin/env python
"""Export a training checkpoint's EMA weights as a hub-ready pipeline folder (how ``pipelines/`` is made).

    python training/export_pipeline.py --run ../train-runs/sdm-64 --output pipelines/lung-sdm-64 \
        --example_masks ../train-runs/data/luna16-mini-all

``--help`` lists the options; the work is :mod:`lung_diffusers.training.pipeline_export` (its docstring tells
how), which tests and other tools use instead of this file.
"""

import sys

from lung_diffusers.training.pipeline_export import cli

if __name__ == "__main__":
    sys.exit(cli())
