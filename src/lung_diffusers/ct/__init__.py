"""CT intensities and lung labels: the bottom layer every other part of lung-diffusers builds on.

Modules:

- :mod:`.window`: the HU window (thesis: [-1000, 400] HU) and the conversions between HU, grey levels (0-255),
  window images ([0, 1]) and the models' range ([-1, 1]), one definition of each.
- :mod:`.label_schemes`: class ids and names, the 6-class (nodule) and 7-class (benign / malignant) schemes chosen
  by number of classes (:func:`label_scheme`), nodule classes and display colours (:func:`mask_to_rgb`).
- :mod:`.label_maps`: label-map validation at the public boundary and resizing by area-weighted majority vote.
- :mod:`.volumes`: CT and label volumes read in LPS orientation (NIfTI, MetaImage, NRRD, DICOM series).
- :mod:`.slice_io`: one slice or label map from a PNG, a volume or a DICOM series; resizing slices and masks.

It imports nothing from the rest of the package. Names are imported on first use, so ``lung_diffusers.ct`` needs
only NumPy until a function needs torch, OpenCV or SimpleITK. Where to add a label scheme: :mod:`.label_schemes`.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "HU_WINDOW",
            "check_hu_window",
            "window_hu",
            "unwindow_hu",
            "image_from_hu",
            "hu_from_image",
            "model_range_from_image",
            "image_from_model_range",
            "model_range_from_grey",
            "model_range_from_hu",
            "hu_from_model_range",
        ),
        ".window",
    ),
    **dict.fromkeys(
        (
            "BACKGROUND",
            "BODY",
            "LEFT_LUNG",
            "RIGHT_LUNG",
            "TRACHEA",
            "NODULE",
            "BENIGN_NODULE",
            "MALIGNANT_NODULE",
            "LABEL_NAMES",
            "MALIGNANCY_LABEL_NAMES",
            "ALL_NODULE_CLASSES",
            "CLASS_COLOURS_RGB",
            "MASK_COLORS_RGB",
            "LabelScheme",
            "NODULE_SCHEME",
            "MALIGNANCY_SCHEME",
            "LABEL_SCHEMES",
            "label_scheme",
            "label_names",
            "mask_to_rgb",
        ),
        ".label_schemes",
    ),
    **dict.fromkeys(
        ("as_label_tensor", "check_label_values", "scaled_labels_hint", "check_label_map_size", "resize_label_map"),
        ".label_maps",
    ),
    **dict.fromkeys(("CTVolume", "LabelVolume", "read_ct_volume", "read_label_volume"), ".volumes"),
    **dict.fromkeys(
        ("CTSlice", "as_window_image", "read_ct_slice", "read_label_slice", "resize_slice", "resize_binary_mask"),
        ".slice_io",
    ),
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
