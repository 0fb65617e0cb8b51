"""Convert official Semantic Diffusion Model (SDM) checkpoints to :class:`SemanticUNet2DModel`.

Command line::

    python -m lung_diffusers.convert_sdm --checkpoint model.pt --config config.json --output DIR [--pipeline]

``--config`` is a JSON file in either of the two forms the official code uses:

* the ``UNetModel`` keyword arguments (recognised by ``model_channels``); ``attention_resolutions`` are
  downsampling factors;
* the training scripts' flags (recognised by ``num_channels``); ``attention_resolutions`` are pixel
  resolutions, an empty ``channel_mult`` means the official defaults for the image size, and missing flags
  take the official defaults. Diffusion flags (``diffusion_steps``, ``noise_schedule``, ``learn_sigma``,
  ``predict_xstart``, ``sigma_small``) shape the scheduler written with ``--pipeline``.

The official code was read to match its layout and weight names; none of it is reproduced here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from .atomic_write import atomic_directory
from .command_line import add_debug_argument, run_command
from .models import SemanticUNet2DModel

logger = logging.getLogger(__name__)

# Official `model_and_diffusion_defaults()` of the SDM training scripts (for the flag form).
OFFICIAL_FLAG_DEFAULTS = dict(
    image_size=64,
    num_classes=151,
    num_channels=128,
    num_res_blocks=2,
    num_heads=4,
    num_heads_upsample=-1,
    num_head_channels=-1,
    attention_resolutions="16,8",
    channel_mult="",
    dropout=0.0,
    class_cond=False,
    use_scale_shift_norm=True,
    resblock_updown=False,
    use_new_attention_order=False,
    no_instance=False,
    learn_sigma=False,
    diffusion_steps=1000,
    noise_schedule="linear",
    predict_xstart=False,
    sigma_small=False,
)
# Official `UNetModel` keyword defaults (for the keyword form).
OFFICIAL_UNET_DEFAULTS = dict(
    dropout=0.0,
    channel_mult=(1, 2, 4, 8),
    conv_resample=True,
    dims=2,
    num_classes=None,
    num_heads=1,
    num_head_channels=-1,
    num_heads_upsample=-1,
    use_scale_shift_norm=False,
    resblock_updown=False,
    use_new_attention_order=False,
)
# `create_model`'s channel multipliers when `channel_mult` is empty.
OFFICIAL_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

_PLAIN_RESNET = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_SPADE_RESNET = {
    "in_norm": "norm1",
    "in_layers.1": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_norm": "norm2",
    "out_layers.2": "conv2",
    "skip_connection": "conv_shortcut",
}
_ATTENTION = {"norm": "group_norm", "proj_out": "to_out.0"}


def _int_list(value, name: str) -> list:
    if isinstance(value, str):
        return [float(v) if "." in v else int(v) for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, int):
        return [value]
    raise ValueError(f"`{name}` must be a comma-separated string or a list, got {value!r}")


def _normalise_official_config(config: Mapping) -> dict:
    """Both config forms -> official ``UNetModel`` keyword arguments plus diffusion flags."""
    if "model_channels" in config:
        unet = {**OFFICIAL_UNET_DEFAULTS, **config}
        unet["attention_resolutions"] = _int_list(unet.get("attention_resolutions", ()), "attention_resolutions")
        unet["channel_mult"] = _int_list(unet["channel_mult"], "channel_mult")
        if unet.get("num_classes") is None:
            raise ValueError("the config has no `num_classes`: this is not a semantic (label-map conditioned) SDM")
        return unet
    if "num_channels" in config:
        flags = {**OFFICIAL_FLAG_DEFAULTS, **config}
        image_size = int(flags["image_size"])
        channel_mult = _int_list(flags["channel_mult"], "channel_mult")
        if not channel_mult:
            if image_size not in OFFICIAL_CHANNEL_MULT:
                raise ValueError(
                    f"empty channel_mult has no official default for image_size={image_size}; "
                    f"give channel_mult explicitly (official defaults exist for {sorted(OFFICIAL_CHANNEL_MULT)})"
                )
            channel_mult = list(OFFICIAL_CHANNEL_MULT[image_size])
        if not flags["class_cond"]:
            raise ValueError("class_cond is False: this is not a semantic (label-map conditioned) SDM checkpoint")
        resolutions = _int_list(flags["attention_resolutions"], "attention_resolutions")
        unet = dict(
            image_size=image_size,
            in_channels=config.get("in_channels"),
            out_channels=config.get("out_channels"),
            model_channels=int(flags["num_channels"]),
            num_res_blocks=int(flags["num_res_blocks"]),
            attention_resolutions=[image_size // int(res) for res in resolutions],
            dropout=float(flags["dropout"]),
            channel_mult=channel_mult,
            conv_resample=True,
            dims=int(flags.get("dims", 2)),
            # The official scripts append one instance-edge channel unless no_instance is set.
            num_classes=int(flags["num_classes"]) + (0 if flags["no_instance"] else 1),
            instance_edge_channel=not flags["no_instance"],
            num_heads=int(flags["num_heads"]),
            num_head_channels=int(flags["num_head_channels"]),
            num_heads_upsample=int(flags["num_heads_upsample"]),
            use_scale_shift_norm=bool(flags["use_scale_shift_norm"]),
            resblock_updown=bool(flags["resblock_updown"]),
            use_new_attention_order=bool(flags["use_new_attention_order"]),
        )
        for key in ("learn_sigma", "diffusion_steps", "noise_schedule", "predict_xstart", "sigma_small"):
            unet[key] = flags[key]
        return unet
    raise ValueError(
        "unrecognised SDM config: expected the official UNetModel keyword arguments (with `model_channels`) "
        "or the official training flags (with `num_channels`)"
    )


def sdm_config_to_unet_config(config: Mapping, state_dict: Mapping[str, torch.Tensor] | None = None) -> dict:
    """Translate an official SDM config (either form) to :class:`SemanticUNet2DModel` keyword arguments.

    Missing ``in_channels`` / ``out_channels`` are inferred from ``state_dict`` when it is given.
    Unsupported official options (3-D models, instance-edge channels, the new attention order, resampling
    without convolutions) raise a `ValueError` that says so.
    """
    official = _normalise_official_config(config)
    if int(official.get("dims", 2)) != 2:
        raise ValueError(f"only 2-D SDM models are supported, this config has dims={official['dims']}")
    if official.get("use_new_attention_order"):
        raise ValueError("use_new_attention_order=True (QKVAttention) is not supported; only the legacy attention order is")
    if official.get("instance_edge_channel"):
        raise ValueError(
            "this checkpoint was trained with an instance-edge channel (no_instance=False); lung-diffusers label "
            "maps have no instances. Only no_instance=True checkpoints can be converted."
        )
    if not official["resblock_updown"] and not official.get("conv_resample", True):
        raise ValueError("conv_resample=False with resblock_updown=False (resampling without convs) is not supported")

    in_channels, out_channels = official.get("in_channels"), official.get("out_channels")
    if state_dict is not None:
        weight_in = state_dict.get("input_blocks.0.0.weight")
        weight_out = state_dict.get("out.2.weight")
        if weight_in is None or weight_out is None:
            raise ValueError("the checkpoint has no `input_blocks.0.0.weight` / `out.2.weight`: not an SDM UNetModel state dict")
        for name, given, found in (("in_channels", in_channels, weight_in.shape[1]), ("out_channels", out_channels, weight_out.shape[0])):
            if given is not None and int(given) != int(found):
                raise ValueError(f"config says {name}={given} but the checkpoint's weights have {found}")
        in_channels, out_channels = int(weight_in.shape[1]), int(weight_out.shape[0])
    if in_channels is None or out_channels is None:
        learn_sigma = official.get("learn_sigma", False)
        in_channels = 3 if in_channels is None else in_channels  # official create_model builds RGB models
        out_channels = (2 if learn_sigma else 1) * in_channels if out_channels is None else out_channels

    model_channels = int(official["model_channels"])
    channel_mult = official["channel_mult"]
    levels = len(channel_mult)
    factors = sorted({int(f) for f in official["attention_resolutions"]})
    unused = [f for f in factors if f not in {2**level for level in range(levels)}]
    if unused:
        # The official model silently never reaches these factors; dropping them keeps the same network.
        logger.warning("attention at downsampling factors %s never occurs in a %d-level U-Net; ignored", unused, levels)
        factors = [f for f in factors if f not in unused]

    num_head_channels = int(official["num_head_channels"])
    heads_upsample = int(official["num_heads_upsample"])
    return dict(
        sample_size=int(official["image_size"]),
        in_channels=int(in_channels),
        out_channels=int(out_channels),
        num_classes=int(official["num_classes"]),
        block_out_channels=tuple(int(m * model_channels) for m in channel_mult),
        layers_per_block=int(official["num_res_blocks"]),
        attention_downsample_factors=tuple(factors),
        attention_head_dim=num_head_channels if num_head_channels != -1 else None,
        num_attention_heads=None if num_head_channels != -1 else int(official["num_heads"]),
        num_attention_heads_upsample=None if num_head_channels != -1 or heads_upsample == -1 else heads_upsample,
        downsample_type="resnet" if official["resblock_updown"] else "conv",
        upsample_type="resnet" if official["resblock_updown"] else "conv",
        resnet_time_scale_shift="scale_shift" if official["use_scale_shift_norm"] else "default",
        dropout=float(official["dropout"]),
        time_embedding_dim=4 * model_channels,
    )


def _official_to_diffusers_prefixes(unet_config: Mapping) -> list[tuple[str, str, str]]:
    """(official prefix, our prefix, kind) for every layer, following the official block order."""
    mapping = [
        ("time_embed.0", "time_embedding.linear_1", "direct"),
        ("time_embed.2", "time_embedding.linear_2", "direct"),
        ("input_blocks.0.0", "conv_in", "direct"),
        ("out.0", "conv_norm_out", "direct"),
        ("out.2", "conv_out", "direct"),
        ("middle_block.0", "mid_block.resnets.0", "spade"),
        ("middle_block.1", "mid_block.attentions.0", "attention"),
        ("middle_block.2", "mid_block.resnets.1", "spade"),
    ]
    levels = len(unet_config["block_out_channels"])
    layers = unet_config["layers_per_block"]
    attention = set(unet_config["attention_downsample_factors"])
    resnet_resample = unet_config["downsample_type"] == "resnet"

    index = 1
    for level in range(levels):
        for j in range(layers):
            mapping.append((f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}", "plain"))
            if 2**level in attention:
                mapping.append((f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}", "attention"))
            index += 1
        if level != levels - 1:
            if resnet_resample:
                mapping.append((f"input_blocks.{index}.0", f"down_blocks.{level}.downsamplers.0", "plain"))
            else:
                mapping.append((f"input_blocks.{index}.0.op", f"down_blocks.{level}.downsamplers.0.conv", "direct"))
            index += 1

    index = 0
    for block, level in enumerate(reversed(range(levels))):
        for j in range(layers + 1):
            mapping.append((f"output_blocks.{index}.0", f"up_blocks.{block}.resnets.{j}", "spade"))
            position = 1
            if 2**level in attention:
                mapping.append((f"output_blocks.{index}.1", f"up_blocks.{block}.attentions.{j}", "attention"))
                position = 2
            if level and j == layers:
                if resnet_resample:
                    mapping.append((f"output_blocks.{index}.{position}", f"up_blocks.{block}.upsamplers.0", "spade"))
                else:
                    mapping.append((f"output_blocks.{index}.{position}.conv", f"up_blocks.{block}.upsamplers.0.conv", "direct"))
            index += 1
    return mapping


def _rename(suffix: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if suffix == old or suffix.startswith(old + "."):
            return new + suffix[len(old) :]
    raise KeyError(suffix)


def convert_sdm_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: SemanticUNet2DModel
) -> dict[str, torch.Tensor]:
    """Rename (and for attention, split) official SDM weights into ``model``'s names. Every key must be used."""
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for official_prefix, prefix, kind in _official_to_diffusers_prefixes(model.config):
        keys = [k for k in state_dict if k.startswith(official_prefix + ".")]
        if not keys:
            raise ValueError(
                f"the checkpoint has no weights under `{official_prefix}`, which this config needs; "
                "does the config match the checkpoint?"
            )
        for key in keys:
            suffix = key[len(official_prefix) + 1 :]
            tensor = state_dict[key]
            if kind == "attention" and suffix.startswith("qkv."):
                # Legacy QKVAttention groups the 3C rows per head as [q, k, v]; diffusers keeps q, k, v apart.
                heads = model.get_submodule(prefix).heads
                channels = tensor.shape[1] if tensor.ndim > 1 else tensor.shape[0] // 3
                grouped = tensor.reshape(heads, 3, channels // heads, *tensor.shape[1:])
                for i, name in enumerate(("to_q", "to_k", "to_v")):
                    part = grouped[:, i].reshape(channels, *tensor.shape[1:])
                    converted[f"{prefix}.{name}.{suffix[4:]}"] = part[..., 0] if part.ndim == 3 else part
            else:
                try:
                    new_suffix = {"direct": suffix}.get(kind) or _rename(
                        suffix, {"plain": _PLAIN_RESNET, "spade": _SPADE_RESNET, "attention": _ATTENTION}[kind]
                    )
                except KeyError:
                    raise ValueError(f"unexpected weight `{key}` in the checkpoint") from None
                if kind == "attention" and new_suffix.startswith("to_out.0.weight"):
                    tensor = tensor[..., 0]  # Conv1d 1x1 -> Linear
                converted[f"{prefix}.{new_suffix}"] = tensor
            used.add(key)

    unused = sorted(set(state_dict) - used)
    if unused:
        raise ValueError(f"{len(unused)} checkpoint weights are not used by this config, e.g. {unused[:5]}")
    expected = model.state_dict()
    for name, tensor in converted.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"`{name}` has shape {tuple(tensor.shape)} in the checkpoint but {tuple(expected[name].shape)} "
                "in the model built from the config; check channel_mult, num_channels, num_classes and heads"
            )
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(
            f"{len(missing)} model weights are missing from the checkpoint, e.g. {missing[:5]}; "
            "does the config match the checkpoint?"
        )
    return converted


def convert_sdm_checkpoint(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> SemanticUNet2DModel:
    """Build a :class:`SemanticUNet2DModel` from an official SDM ``state_dict`` and its config (either form).

    Loading is strict: every checkpoint tensor is used and every model weight is filled.

    Example:
        ```py
        >>> import json
        >>> from safetensors.torch import load_file
        >>> from lung_diffusers import convert_sdm_checkpoint

        >>> fixture = "../shared/fixtures/sdm_reference_small"
        >>> unet = convert_sdm_checkpoint(load_file(f"{fixture}/weights.safetensors"), json.load(open(f"{fixture}/config.json")))
        >>> unet.config.block_out_channels
        (32, 64, 64)
        ```
    """
    state_dict = _strip_wrappers(state_dict)
    model = SemanticUNet2DModel(**sdm_config_to_unet_config(config, state_dict))
    model.load_state_dict(convert_sdm_state_dict(state_dict, model), strict=True)
    return model.eval()


def sdm_scheduler_from_config(config: Mapping, learned_variance: bool):
    """The :class:`~diffusers.DDPMScheduler` matching the official diffusion flags (defaults: 1000 linear steps)."""
    from diffusers import DDPMScheduler

    flags = {**OFFICIAL_FLAG_DEFAULTS, **config}
    steps = int(flags["diffusion_steps"])
    learn_sigma = bool(config.get("learn_sigma", learned_variance))
    if learn_sigma != learned_variance:
        raise ValueError(f"config says learn_sigma={learn_sigma} but the model's output channels say {learned_variance}")
    if flags["noise_schedule"] == "linear":
        # guided-diffusion scales the linear schedule so any step count spans the same noise range.
        scale = 1000 / steps
        schedule = dict(beta_schedule="linear", beta_start=scale * 1e-4, beta_end=scale * 0.02)
    elif flags["noise_schedule"] == "cosine":
        schedule = dict(beta_schedule="squaredcos_cap_v2")
    else:
        raise ValueError(f"unknown noise_schedule {flags['noise_schedule']!r}; expected 'linear' or 'cosine'")
    if learn_sigma:
        variance_type = "learned_range"
    else:
        variance_type = "fixed_small" if flags["sigma_small"] else "fixed_large"
    return DDPMScheduler(
        num_train_timesteps=steps,
        variance_type=variance_type,
        prediction_type="sample" if flags["predict_xstart"] else "epsilon",
        clip_sample=True,
        # guided-diffusion respaces k sampling steps evenly over [0, T-1] (`space_timesteps`), which is
        # diffusers' "linspace"; DDPM's default "leading" never starts at t=T-1 for k < T.
        timestep_spacing="linspace",
        **schedule,
    )


def _strip_wrappers(state_dict: Mapping) -> dict:
    for key in ("state_dict", "model"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_sdm_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official SDM checkpoint (``.pt``/``.pth`` via ``torch.load(weights_only=True)``, or ``.safetensors``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _strip_wrappers(load_file(path))
        except SafetensorError as error:
            raise ValueError(
                f"{path} is not a valid safetensors file ({error}); it may be truncated or corrupt, "
                "download or export it again"
            ) from error
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickles with arbitrary objects are refused on purpose
        raise ValueError(
            f"could not read {path} as a weights-only torch checkpoint ({error}). Only plain state dicts are "
            "loaded (torch.load(weights_only=True)); re-save it as a state dict or as .safetensors."
        ) from error
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")
    return _strip_wrappers(state_dict)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lung_diffusers.convert_sdm",
        description="Convert an official Semantic Diffusion Model (SDM) checkpoint to a SemanticUNet2DModel "
        "folder, or with --pipeline to a LungSDMPipeline folder.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="official SDM weights: a .pt/.pth state dict or a .safetensors file")
    parser.add_argument("--config", required=True, metavar="PATH",
                        help="the checkpoint's JSON config: official UNetModel keyword arguments "
                        "(with model_channels) or official training flags (with num_channels)")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder to write to, created if missing")
    parser.add_argument("--pipeline", action="store_true",
                        help="write a whole LungSDMPipeline (model, DDPM scheduler from the config, model card) "
                        "instead of the model alone")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --output: replace the files this converter writes, "
                        "keep all others")
    return add_debug_argument(parser)


def _convert_to_folder(args: argparse.Namespace) -> str:
    """The command line's work. Bad input raises `ValueError`, a failed write `OSError`."""
    output = Path(args.output)
    for path in (output, *output.parents):
        if path.exists() and not path.is_dir():
            raise ValueError(f"--output {output}: {path} is a file, not a folder; choose a folder path")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise ValueError(
            f"{output} is not empty; pass --overwrite to replace the converter's files in it (others are kept)"
        )
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read config {args.config}: {error}") from error
    try:
        unet = convert_sdm_checkpoint(load_sdm_checkpoint(args.checkpoint), config)
    except OSError as error:  # an unreadable checkpoint is bad input, unlike a failed write below
        raise ValueError(str(error)) from error
    scheduler = sdm_scheduler_from_config(config, unet.learned_variance) if args.pipeline else None

    inputs = [Path(args.checkpoint).resolve(), Path(args.config).resolve()]
    with atomic_directory(output, overwrite=True) as staging:
        if args.pipeline:
            from .pipelines.pipeline_lung_sdm import LungSDMPipeline

            LungSDMPipeline(unet=unet, scheduler=scheduler).save_pretrained(staging)
        else:
            unet.save_pretrained(staging)
        # e.g. `--output .` beside the official config.json: never replace the inputs.
        for target in (output.resolve() / entry.name for entry in staging.iterdir()):
            for source in inputs:
                if source == target or target in source.parents:
                    raise ValueError(
                        f"writing {target} would replace the input {source}; choose another --output folder"
                    )
    params = sum(p.numel() for p in unet.parameters())
    kind = "LungSDMPipeline" if args.pipeline else "SemanticUNet2DModel"
    return f"wrote {kind} ({params / 1e6:.1f} M parameters) to {output}"


def main(argv: list[str] | None = None) -> None:
    """The command line; on failure it exits with status 2 (bad input), 1 (another error, e.g. a failed write) or
    130 (Ctrl-C): :mod:`lung_diffusers.command_line`."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    # atomic_directory undoes a half-done swap on Ctrl-C, so the folder is never left half written.
    interrupted = f"interrupted; {args.output} holds its previous files or the complete new output"
    code = run_command(lambda: print(_convert_to_folder(args)), argv, prog=parser.prog, interrupted=interrupted)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
