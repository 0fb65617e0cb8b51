"""Which saved pipeline folders each lung-diffusers pipeline loads, checked before diffusers loads them.

diffusers loads whatever U-Net a folder's ``model_index.json`` names: ``LungSDMPipeline.from_pretrained`` on the
healthy prior's folder (a ``DDPMPipeline``) got a ``UNet2DModel`` and failed later with ``AttributeError:
'FrozenDict' object has no attribute 'num_classes'``.
"""

from __future__ import annotations

import os

from diffusers import DiffusionPipeline

# The U-Net classes of saved folders: what they are, and the pipeline that loads them.
UNET_KINDS: dict[str, tuple[str, str]] = {
    "UNet2DModel": ("an unconditional U-Net, such as the healthy prior", "LungRePaintPipeline"),
    "SemanticUNet2DModel": ("a Semantic Diffusion Model", "LungSDMPipeline"),
}
# The pipeline classes of saved folders and the class that loads each.
FOLDER_LOADERS: dict[str, str] = {
    "LungSDMPipeline": "LungSDMPipeline",
    "LungSDMUpscalePipeline": "LungSDMUpscalePipeline",
    "LungSDMCombinedPipeline": "LungSDMCombinedPipeline",
    "LungRePaintPipeline": "LungRePaintPipeline",
    "DDPMPipeline": "LungRePaintPipeline",
}
HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "proxies")


def read_model_index(source: str | os.PathLike, **hub_kwargs) -> dict | None:
    """A folder's or Hub repo's ``model_index.json``; `None` when it cannot be read (diffusers then says why).

    For a Hub id this is the file ``from_pretrained`` downloads first anyway, so it is cached for it.
    """
    try:
        return dict(DiffusionPipeline.load_config(source, **hub_kwargs))
    except (OSError, ValueError):  # missing file, offline, invalid repo id: left to diffusers' own error
        return None


def check_pipeline_folder(
    source: str | os.PathLike,
    pipeline: str,
    unet_classes: tuple[str, ...],
    kwargs,
    pipeline_classes: tuple[str, ...] = (),
) -> None:
    """Raise a `ValueError` when ``source`` is a saved pipeline whose U-Net ``pipeline`` cannot use.

    Args:
        source: what was given to ``from_pretrained``.
        pipeline: the loading class's name, for the message.
        unet_classes: the U-Net class names it loads.
        kwargs: the other ``from_pretrained`` arguments (Hub options; a ``unet`` given there replaces the folder's).
        pipeline_classes: the saved pipeline classes it loads (empty: any whose U-Net fits).
    """
    if "unet" in kwargs:
        return
    index = read_model_index(source, **{key: kwargs[key] for key in HUB_KWARGS if key in kwargs})
    if index is None:
        return
    folder_class = index.get("_class_name")
    entry = index.get("unet")
    unet_class = entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None
    if unet_class in unet_classes:
        # The U-Net fits, but the folder may be another stage (an upscaler's folder also holds an SDM U-Net).
        if pipeline_classes and folder_class in FOLDER_LOADERS and folder_class not in pipeline_classes:
            raise ValueError(
                f"{os.fspath(source)} is a {folder_class} folder, which {pipeline} cannot load: load it with "
                f"{FOLDER_LOADERS[folder_class]}.from_pretrained({os.fspath(source)!r}) (or lung_diffusers.load_pipeline)"
            )
        return
    folder = f"{os.fspath(source)} is a {index.get('_class_name', 'pipeline')} folder"
    if unet_class in UNET_KINDS:
        what, loader = UNET_KINDS[unet_class]
        raise ValueError(
            f"{folder} (its unet is {what}), which {pipeline} cannot load: load it with "
            f"{loader}.from_pretrained({os.fspath(source)!r})"
        )
    raise ValueError(
        f"{folder} (its unet is {unet_class or 'missing'}), which {pipeline} cannot load: it loads folders whose "
        f"unet is a {' or '.join(unet_classes)}, as {pipeline}.save_pretrained writes them"
    )
