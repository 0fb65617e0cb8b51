import pandas as pd
import pytest

from lung_diffusers.data.luna16 import (
    find_annotations,
    find_excluded_annotations,
    find_luna16_series,
    read_luna16_annotations,
)


def test_finds_each_series_in_its_subset_folder(lidc_mini, sample_series):
    series = find_luna16_series(lidc_mini)
    assert set(series) == set(sample_series.values())
    assert all(path.parent.name == "subset0" and path.is_file() for path in series.values())


def test_a_folder_without_scans_says_what_to_unpack(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"subset0/<seriesuid>\.mhd.*unzip subset0\.zip"):
        find_luna16_series(tmp_path)
    with pytest.raises(FileNotFoundError, match="LUNA16 folder not found"):
        find_luna16_series(tmp_path / "missing")


def test_annotations_are_grouped_by_series_with_duplicates_dropped(lidc_mini, sample_series):
    reference = read_luna16_annotations(lidc_mini / "annotations.csv")
    assert {uid: len(rows) for uid, rows in reference.items()} == {
        sample_series["LIDC-IDRI-0001"]: 1,
        sample_series["LIDC-IDRI-0003"]: 3,
    }
    (nodule,) = reference[sample_series["LIDC-IDRI-0001"]]
    assert nodule.center_mm == pytest.approx((56.20840547, 86.34341278, -115.8675792))
    assert nodule.radius_mm == pytest.approx(23.35064438 / 2)
    excluded = read_luna16_annotations(lidc_mini / "annotations_excluded.csv")
    table = pd.read_csv(lidc_mini / "annotations_excluded.csv", dtype={"seriesuid": str})
    assert len(table) == 126
    assert sum(len(rows) for rows in excluded.values()) == len(table.drop_duplicates())


def test_malformed_annotation_files_name_the_problem(tmp_path):
    missing_column = tmp_path / "a.csv"
    missing_column.write_text("seriesuid,coordX,coordY,coordZ\n1.2,0,0,0\n")
    with pytest.raises(ValueError, match=r"a\.csv lacks column\(s\) diameter_mm"):
        read_luna16_annotations(missing_column)
    bad_number = tmp_path / "b.csv"
    bad_number.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,0,0,0,5\n1.2,0,x,0,5\n")
    with pytest.raises(ValueError, match=r"b\.csv line 3"):
        read_luna16_annotations(bad_number)
    with pytest.raises(FileNotFoundError, match="c.csv"):
        read_luna16_annotations(tmp_path / "c.csv")


def test_annotation_files_are_found_where_luna16_downloads_keep_them(tmp_path):
    header = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
    assert find_excluded_annotations(tmp_path) is None and find_annotations(tmp_path) is None
    nested = tmp_path / "evaluationScript" / "annotations" / "annotations_excluded.csv"
    nested.parent.mkdir(parents=True)
    nested.write_text(header)
    assert find_excluded_annotations(tmp_path) == nested
    (tmp_path / "CSVFILES").mkdir()
    (tmp_path / "CSVFILES" / "annotations.csv").write_text(header)
    (tmp_path / "CSVFILES" / "annotations_excluded.csv").write_text(header)
    assert find_annotations(tmp_path) == tmp_path / "CSVFILES" / "annotations.csv"
    assert find_excluded_annotations(tmp_path) == tmp_path / "CSVFILES" / "annotations_excluded.csv"
    (tmp_path / "annotations.csv").write_text(header)
    (tmp_path / "annotations_excluded.csv").write_text(header)
    assert find_annotations(tmp_path) == tmp_path / "annotations.csv"
    assert find_excluded_annotations(tmp_path) == tmp_path / "annotations_excluded.csv"
