"""Default settings of nodule editing and anomaly maps, in a module without heavy imports (so that
``lung-diffusers --help`` does not load torch)."""

# The data recipe's slice size: the healthy prior was trained on 64-px crops of 256-px slices.
RECIPE_IMAGE_SIZE = 256

# Pixels added around a nodule before removing it. The thesis saw "a discrete white border around the nodule
# region" when inpainting the bare mask and proposed expanding it (section 4.2.2); 3 px of a 256-px recipe slice
# is about 4-5 mm.
DEFAULT_REMOVAL_DILATION_PX = 3

# Around an inserted nodule: one pixel of a 64-px SDM when inserting into a 256-px recipe slice.
DEFAULT_INSERTION_DILATION_PX = 4

# Anomaly maps: the share of the chain a slice is noised to (AnoDDPM's lambda = 250 of 1000 steps).
DEFAULT_NOISE_LEVEL = 0.25
