"""The packages' lazily imported names: each resolves to what it names, whatever was imported before."""

import importlib
import pkgutil

import pytest

PACKAGES = [
    "lung_diffusers",
    "lung_diffusers.ct",
    "lung_diffusers.data",
    "lung_diffusers.evaluation",
    "lung_diffusers.inpainting",
    "lung_diffusers.pipelines",
    "lung_diffusers.segmentation",
    "lung_diffusers.synthesis",
    "lung_diffusers.training",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_no_exported_name_is_also_a_submodule(name):
    # Importing a submodule sets it as an attribute of its package, so an exported function of the same name
    # (``inpainting.anomaly_map`` once was) would turn into the module for every later importer.
    package = importlib.import_module(name)
    submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    exported = set(getattr(package, "_EXPORTS", {})) | set(getattr(package, "__all__", []))
    assert not submodules & exported


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name):
    package = importlib.import_module(name)
    for exported in getattr(package, "__all__", []):
        assert getattr(package, exported) is not None


def test_deprecations_follow_lung_diffusers_version_not_diffusers(monkeypatch):
    # diffusers' deprecate() compares with diffusers' own version: at diffusers 1.0.0 every shim would raise.
    import warnings

    import lung_diffusers
    from lung_diffusers._deprecation import deprecate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deprecate("old_name", "1.0.0", "Use new_name instead.")
    assert caught[0].category is FutureWarning and "removed in version 1.0.0" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller
    monkeypatch.setattr(lung_diffusers, "__version__", "1.0.0rc1")
    import pytest

    with pytest.raises(ValueError, match="remove the shim"):
        deprecate("old_name", "1.0.0", "Use new_name instead.")
