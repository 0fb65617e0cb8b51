"""Does padding the training data with synthetic slices help? The thesis' experiment, arm against arm.

Arms: ``real`` (the real training slices only) and ``real+synthetic`` (the same, plus a synthetic dataset). Each
task is trained ``repetitions`` times per arm, run ``r`` with seed ``r`` in both arms, so the runs pair up. The
data of a task (patches, slices, the non-nodule draws) follows ``data_seed`` only: both arms and every run see
the same real training and test data, and the synthetic arm the same synthetic data.

Splits: with ``folds=None`` the recipe's own split (on the mini data: LIDC-IDRI-0002/0003 train, LIDC-IDRI-0001
test, the patient both demo checkpoints held out). With ``folds=k`` (full LUNA16; the thesis used 10), every
patient of both splits is dealt to one of ``k`` folds (sorted by :func:`lung_diffusers.data.splits.patient_position`,
then round-robin), and each fold is the test set once. Synthetic slices made from a test patient's masks are left
out of that fold's training (the thesis: "the synthetic images in the test fold being excluded").

Reported per task and arm: every run's metrics (task (a)/(b): accuracy, precision, recall, specificity, F1;
task (c): AP50 and recall at IoU 0.5), their mean with a bootstrap interval over test images (each image's result
averaged over the runs; AP recomputed on each resample), and between the arms the Wilcoxon rank-sum p over the
runs (as the thesis) and the signed-rank p over the paired seeds (:mod:`.statistics`). Trained models are cached by
content (:mod:`.model_cache`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..bootstrap import paired_bootstrap_interval
from ..content_cache import content_key
from .average_precision import average_precision, recall_at
from .model_cache import CACHE_VERSION, ModelCache
from .nodule_localiser import LocaliserSettings, build_localiser, detect_nodules, train_localiser
from .nodule_samples import (
    IMAGE_SIZE,
    MIN_DIAMETER_MM,
    PATCH_SIZE,
    PatchSet,
    SliceSample,
    localisation_slices,
    patch_set,
    slice_boxes,
)
from .patch_classifier import (
    ClassifierSettings,
    build_patch_classifier,
    classification_metrics,
    predict_patch_classes,
    train_patch_classifier,
)
from .statistics import image_interval, rank_sum_p, signed_rank_p

TASKS = {
    "a": "nodule vs non-nodule, 32x32 patches",
    "b": "non-nodule / benign / malignant, 32x32 patches",
    "c": "nodule localisation on slices, AP50",
}
REAL, PADDED = "real", "real+synthetic"
HEADLINE = {"a": "accuracy", "b": "accuracy", "c": "ap50"}


@dataclass(frozen=True)
class DownstreamSettings:
    """Everything an experiment depends on besides its data."""

    tasks: tuple[str, ...] = ("a", "c")
    repetitions: int = 10
    folds: int | None = None
    image_size: int = IMAGE_SIZE
    patch_size: int = PATCH_SIZE
    min_diameter_mm: float = MIN_DIAMETER_MM
    nodule_free_per_nodule_slice: float = 1.0
    data_seed: int = 0
    bootstrap_resamples: int = 2000
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    localiser: LocaliserSettings = field(default_factory=LocaliserSettings)

    def check(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be distinct ones of {', '.join(TASKS)}, got {' '.join(self.tasks)}")
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be at least 1, got {self.repetitions}")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"folds must be at least 2 (or none, for the dataset's own split), got {self.folds}")
        if self.image_size < self.patch_size or self.patch_size < 8:
            raise ValueError(f"need 8 <= patch size <= image size, got {self.patch_size} and {self.image_size}")
        for name, value in (("classifier steps", self.classifier.steps), ("localiser steps", self.localiser.steps)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    @classmethod
    def quick(cls, **changes) -> DownstreamSettings:
        """Tiny models and a few steps: the plumbing end to end in seconds (tests; the numbers mean nothing)."""
        settings = cls(
            repetitions=2,
            bootstrap_resamples=200,
            classifier=ClassifierSettings(steps=4, batch_size=8),
            localiser=LocaliserSettings(steps=3, batch_size=2, channels=(4, 8), num_res_units=0),
        )
        return replace(settings, **changes)

    def as_dict(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("classifier", "localiser")},
            "classifier": self.classifier.as_dict(),
            "localiser": self.localiser.as_dict(),
        }


@dataclass
class Fold:
    """One train/test split: real training and test slices, and the synthetic slices this fold may train on."""

    index: int
    train: list[SliceSample]
    test: list[SliceSample]
    synthetic: list[SliceSample]
    synthetic_left_out: int = 0

    @property
    def test_patients(self) -> list[str]:
        return sorted({s.patient_id for s in self.test})


def make_folds(
    train: Sequence[SliceSample],
    test: Sequence[SliceSample],
    synthetic: Sequence[SliceSample],
    folds: int | None,
    seed: int = 0,
) -> list[Fold]:
    """The recipe's split (``folds=None``) or ``folds`` patient-level folds over both splits (module docstring).
    Synthetic slices without a patient ID cannot be traced to a test patient and are always used.

    Raises:
        ValueError: a patient in both splits, no test or training slices, or fewer patients than folds.
    """
    from ...data.splits import patient_position

    if folds is None:
        shared = sorted({s.patient_id for s in train} & {s.patient_id for s in test})
        if shared:
            raise ValueError(f"patients {', '.join(shared)} are in both the train and the test split")
        splits = [(list(train), list(test))]
    else:
        everyone = list(train) + list(test)
        patients = sorted({s.patient_id for s in everyone}, key=lambda p: (patient_position(p, seed), p))
        if len(patients) < folds:
            raise ValueError(f"{folds} folds need at least {folds} patients; the dataset has {len(patients)}")
        fold_of = {patient: k % folds for k, patient in enumerate(patients)}
        splits = [
            ([s for s in everyone if fold_of[s.patient_id] != k], [s for s in everyone if fold_of[s.patient_id] == k])
            for k in range(folds)
        ]
    out = []
    for index, (fold_train, fold_test) in enumerate(splits):
        if not fold_train or not fold_test:
            raise ValueError(f"fold {index} has no {'training' if not fold_train else 'test'} slices")
        held_out = {s.patient_id for s in fold_test}
        allowed = [s for s in synthetic if s.patient_id not in held_out]
        out.append(Fold(index, fold_train, fold_test, allowed, len(synthetic) - len(allowed)))
    return out


# ---------------------------------------------------------------------------------------------- task data


@dataclass
class TaskData:
    """One task's data in one fold: the training data of each arm and the test data."""

    train: dict[str, PatchSet | list[SliceSample]]
    test: PatchSet | list[SliceSample]
    note: str = ""


def task_data(task: str, fold: Fold, settings: DownstreamSettings, with_synthetic: bool) -> TaskData:
    """The patches (tasks a, b) or slices (task c) of ``fold`` for each arm; seeded by ``data_seed`` and the fold."""

    def rng(part: int) -> np.random.Generator:
        return np.random.default_rng([settings.data_seed, fold.index, ord(task), part])

    note = ""
    if task in ("a", "b"):
        make = lambda samples, part: patch_set(  # noqa: E731
            samples, task, rng(part), settings.patch_size, settings.min_diameter_mm
        )
        real, test = make(fold.train, 0), make(fold.test, 1)
        extra = make(fold.synthetic, 2) if with_synthetic else None
        if task == "b" and extra is not None and not len(extra):
            note = "the synthetic slices carry no malignancy classes (a 6-class generator): real+synthetic not run"
            extra = None
        train = {REAL: real} | ({PADDED: PatchSet.concatenate([real, extra])} if extra is not None else {})
    else:
        make = lambda samples, part: localisation_slices(  # noqa: E731
            samples, rng(part), settings.nodule_free_per_nodule_slice, settings.min_diameter_mm
        )
        real, test = make(fold.train, 0), make(fold.test, 1)
        train = {REAL: real} | ({PADDED: real + make(fold.synthetic, 2)} if with_synthetic else {})
    return TaskData(train, test, note)


def data_digest(data: PatchSet | list[SliceSample], settings: DownstreamSettings) -> str:
    """The content of a training set, for the model's cache key."""
    if isinstance(data, PatchSet):
        return content_key(data.patches, data.labels)
    boxes = [slice_boxes(s, settings.min_diameter_mm).round(4).tolist() for s in data]
    return content_key(np.stack([s.image for s in data]), boxes)


# ---------------------------------------------------------------------------------------------- runs


def _num_classes(task: str) -> int:
    return 3 if task == "b" else 2


CLASS_NAMES = {"a": ("non-nodule", "nodule"), "b": ("non-nodule", "benign", "malignant")}


def confusion(task: str, arm_runs: list[dict], tests) -> list[list[int]]:
    """Tasks (a)/(b): test patches by true class (rows) and predicted class (columns), summed over the runs: which
    mistakes an arm makes (a benign call for a malignant nodule is not a non-nodule call)."""
    k = _num_classes(task)
    counts = np.zeros((k, k), np.int64)
    for run in arm_runs:
        np.add.at(counts, (tests[run["fold"]].labels, run["_predictions"]), 1)
    return counts.tolist()


def train_or_load(task, arm, data, settings: DownstreamSettings, seed: int, cache: ModelCache, progress=None):
    """``(model, trained_now)`` for one run; ``progress(steps)`` follows the training."""
    specific = settings.classifier.as_dict() if task in ("a", "b") else settings.localiser.as_dict()
    common = {
        "image_size": settings.image_size,
        "patch_size": settings.patch_size,
        "min_diameter_mm": settings.min_diameter_mm,
    }
    key = content_key(CACHE_VERSION, task, arm, data_digest(data, settings), specific, common, seed)
    metadata = {"task": task, "arm": arm, "seed": seed, "settings": specific, **common}
    if task in ("a", "b"):
        build = lambda: build_patch_classifier(_num_classes(task), settings.classifier)  # noqa: E731
        train = lambda: train_patch_classifier(data, _num_classes(task), settings.classifier, seed, progress)  # noqa: E731
    else:
        build = lambda: build_localiser(settings.localiser)  # noqa: E731
        train = lambda: train_localiser(data, settings.localiser, seed, settings.min_diameter_mm, progress)  # noqa: E731
    return cache.trained(task, key, build, train, metadata)


def test_predictions(task: str, model, test, settings: DownstreamSettings):
    """Task (a)/(b): the predicted class of each test patch; task (c): each test slice's (boxes, scores)."""
    if task in ("a", "b"):
        return predict_patch_classes(model, test.patches).argmax(axis=1)
    return detect_nodules(model, np.stack([s.image for s in test]), settings.localiser)


def run_metrics(task: str, predictions, test, settings: DownstreamSettings) -> dict:
    if task in ("a", "b"):
        return classification_metrics(test.labels, predictions, positive=1 if task == "a" else None)
    truths = [slice_boxes(s, settings.min_diameter_mm) for s in test]
    boxes, scores = [p[0] for p in predictions], [p[1] for p in predictions]
    return {"ap50": average_precision(boxes, scores, truths), "recall50": recall_at(boxes, scores, truths)}


def run_experiment(
    folds: Sequence[Fold],
    settings: DownstreamSettings,
    cache: ModelCache,
    with_synthetic: bool,
    show_progress: bool = True,
) -> dict:
    """Train (or load) every run of every task and arm, and compare the arms (module docstring). Returns the
    report's ``tasks`` part: per task its runs, intervals, p-values, data counts."""
    from tqdm.auto import tqdm

    settings.check()
    build_localiser(settings.localiser)  # imports torch and MONAI now, so the first run's time is its training
    arms = [REAL, PADDED] if with_synthetic else [REAL]
    data = {
        (task, fold.index): task_data(task, fold, settings, with_synthetic)
        for task in settings.tasks
        for fold in folds
    }
    total = sum(len(d.train) for d in data.values()) * settings.repetitions
    results: dict = {}
    with tqdm(total=total, desc="downstream runs", unit="run", disable=not show_progress) as runs_bar:
        for task in settings.tasks:
            steps = settings.classifier.steps if task in ("a", "b") else settings.localiser.steps
            # Per arm: per fold, per repetition, the run's metrics and its test predictions.
            runs = {arm: [] for arm in arms}
            for fold in folds:
                fold_data = data[task, fold.index]
                for seed in range(settings.repetitions):
                    for arm, train in fold_data.train.items():
                        runs_bar.set_postfix_str(f"task {task}, fold {fold.index}, seed {seed}, {arm}")
                        started = time.perf_counter()
                        with tqdm(
                            total=steps, desc="training", unit="step", leave=False, disable=not show_progress
                        ) as bar:
                            model, trained = train_or_load(task, arm, train, settings, seed, cache, bar.update)
                        seconds = time.perf_counter() - started
                        predictions = test_predictions(task, model, fold_data.test, settings)
                        metrics = run_metrics(task, predictions, fold_data.test, settings)
                        runs[arm].append(
                            {
                                "fold": fold.index,
                                "seed": seed,
                                **metrics,
                                "trained": trained,
                                "seconds": round(seconds, 2),
                                "_predictions": predictions,
                            }
                        )
                        runs_bar.update()
            results[task] = summarise_task(task, runs, [data[task, f.index] for f in folds], settings)
    return results


# ---------------------------------------------------------------------------------------------- summary


def summarise_task(task: str, runs: dict[str, list[dict]], fold_data: Sequence[TaskData], settings) -> dict:
    """Runs, means with intervals over test images, and the arms' comparison for one task."""
    headline = HEADLINE[task]
    tests = [d.test for d in fold_data]
    image_fold = np.concatenate([np.full(len(t), k) for k, t in enumerate(tests)])
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tests])])
    arms = {}
    per_image: dict[str, np.ndarray] = {}
    for arm, arm_runs in runs.items():
        if task in ("a", "b"):
            # Each test image's correctness, averaged over the repetitions of its fold's runs.
            correct = np.zeros(len(image_fold))
            for run in arm_runs:
                k = run["fold"]
                truth = tests[k].labels
                correct[offsets[k] : offsets[k + 1]] += (run["_predictions"] == truth) / settings.repetitions
            per_image[arm] = correct
            interval = image_interval(correct, n_resamples=settings.bootstrap_resamples)
        else:
            detections = _pooled_detections(arm_runs, tests, settings.repetitions)
            truths = [slice_boxes(s, settings.min_diameter_mm) for t in tests for s in t]
            per_image[arm] = detections
            interval = image_interval(
                images=len(truths),
                metric=lambda idx, det=detections, boxes=truths: _mean_ap(det, boxes, idx),
                n_resamples=settings.bootstrap_resamples,
            )
        values = np.array([run[headline] for run in arm_runs], np.float64)
        arms[arm] = {
            "runs": [{k: v for k, v in run.items() if not k.startswith("_")} for run in arm_runs],
            "mean_over_runs": float(np.nanmean(values)),
            "std_over_runs": float(np.nanstd(values, ddof=1)) if values.size > 1 else float("nan"),
            "interval_over_test_images": interval.as_dict(),
            "trained_runs": int(sum(run["trained"] for run in arm_runs)),
            "train": _counts(task, [d.train[arm] for d in fold_data]),
        }
        if task in ("a", "b"):
            arms[arm]["confusion"] = confusion(task, arm_runs, tests)
    summary = {
        "task": TASKS[task],
        "metric": headline,
        "arms": arms,
        "test": _counts(task, tests),
        "note": "; ".join(sorted({d.note for d in fold_data if d.note})),
    }
    if PADDED in runs and runs[PADDED]:
        summary["comparison"] = _compare(task, runs, per_image, tests, settings)
    return summary


def _pooled_detections(arm_runs: list[dict], tests, repetitions: int) -> list[list]:
    """``detections[seed][image]``: each repetition's detections of every test image (its fold's model)."""
    pooled = [[None] * sum(len(t) for t in tests) for _ in range(repetitions)]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tests])])
    for run in arm_runs:
        for i, found in enumerate(run["_predictions"]):
            pooled[run["seed"]][offsets[run["fold"]] + i] = found
    return pooled


def _mean_ap(detections: list[list], truths: list[np.ndarray], indices: np.ndarray) -> float:
    """AP50 on the images at ``indices``, averaged over the repetitions."""
    values = [
        average_precision([run[i][0] for i in indices], [run[i][1] for i in indices], [truths[i] for i in indices])
        for run in detections
    ]
    return float(np.mean(values))


def _compare(task: str, runs: dict, per_image: dict, tests, settings) -> dict:
    headline = HEADLINE[task]
    real = [run[headline] for run in runs[REAL]]
    padded = [run[headline] for run in runs[PADDED]]
    if task in ("a", "b"):
        difference = paired_bootstrap_interval(
            per_image[PADDED], per_image[REAL], n_resamples=settings.bootstrap_resamples
        )
    else:
        truths = [slice_boxes(s, settings.min_diameter_mm) for t in tests for s in t]
        difference = image_interval(
            images=len(truths),
            metric=lambda idx: _mean_ap(per_image[PADDED], truths, idx) - _mean_ap(per_image[REAL], truths, idx),
            n_resamples=settings.bootstrap_resamples,
        )
    finite = np.isfinite(real).all() and np.isfinite(padded).all()
    return {
        "difference": difference.as_dict(),
        "rank_sum_p": rank_sum_p(padded, real) if finite else None,
        "signed_rank_p": signed_rank_p(padded, real) if finite else None,
        "runs_per_arm": len(real),
    }


def _counts(task: str, parts: Sequence) -> dict:
    """How much data: images, nodule images, distinct nodules, patients, synthetic images."""
    if task in ("a", "b"):
        labels = np.concatenate([p.labels for p in parts])
        ids = {i for p in parts for i in p.nodule_ids if i is not None}
        patients = {x for p in parts for x in p.patients}
        synthetic = int(sum(p.synthetic.sum() for p in parts))
        return {
            "images": int(labels.size),
            "per_class": np.bincount(labels, minlength=_num_classes(task)).tolist(),
            "nodules": len(ids),
            "patients": sorted(patients),
            "synthetic_images": synthetic,
        }
    slices = [s for p in parts for s in p]
    return {
        "images": len(slices),
        "nodule_images": sum(bool(s.counted_nodules()) for s in slices),
        "boxes": sum(len(s.counted_nodules()) for s in slices),
        "nodules": len({n.nodule_id for s in slices for n in s.counted_nodules()}),
        "patients": sorted({s.patient_id for s in slices}),
        "synthetic_images": sum(s.synthetic for s in slices),
    }


def honesty(results: dict, folds: Sequence[Fold]) -> str:
    """A plain-words line on how much the test set can say."""
    patients = sorted({p for fold in folds for p in fold.test_patients})
    parts = []
    for task, summary in results.items():
        test = summary["test"]
        nodule_images = test["per_class"][1:] if "per_class" in test else [test["nodule_images"]]
        parts.append(
            f"task ({task}) tests on {test['images']} images, {sum(nodule_images)} of them showing "
            f"{test['nodules']} distinct nodule(s)"
        )
    nodules = max((s["test"]["nodules"] for s in results.values()), default=0)
    where = f"{len(patients)} test patient(s) ({', '.join(patients[:5])}{', ...' if len(patients) > 5 else ''})"
    return (
        f"How weak this test is: {where}; "
        + "; ".join(parts)
        + ". "
        + (
            f"With {nodules} test nodule(s) these figures say how {'that nodule is' if nodules == 1 else 'those nodules are'} "
            "recognised, not how nodules in general are: the slices of one nodule are not independent, so the "
            "bootstrap intervals over test images are too narrow, and the p-values compare runs that differ only "
            "by seed on this one test set (seed-to-seed variation, not generalisation). The thesis' figures came from "
            "888 scans with 1,139 nodule slices, over 10 folds."
            if len(folds) == 1 or nodules < 30
            else f"Pooled over {len(folds)} patient-level folds."
        )
    )
