"""The one FER+ reader: Microsoft's majority rule and label.csv parsing, on written files and real FER+."""
from __future__ import annotations

from pathlib import Path

import pytest

from vrfer.core.errors import DatasetError
from vrfer.core.ferplus import majority_faces, majority_label, split_names


@pytest.mark.parametrize("votes, label", [
    ([0, 0, 0, 0, 2, 1, 0, 7, 0, 0], "contempt"),  # the 1 vote for disgust is ignored
    ([6, 0, 1, 2, 0, 0, 0, 0, 1, 0], "neutral"),
    ([0, 0, 4, 0, 1, 2, 3, 0, 0, 0], None),  # 4 of 9: no majority
    ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], None),  # a tie is not a majority
    ([3, 0, 0, 0, 0, 0, 0, 0, 7, 0], None),  # majority "unknown"
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),  # not a face
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None),  # only single votes
])
def test_majority_label_follows_microsoft_rule(votes, label):
    assert majority_label(votes) == label


def _split(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "FER2013Test"
    folder.mkdir()
    (folder / "label.csv").write_text(text)
    return folder


def test_majority_faces_keep_labelled_rows_in_file_order(tmp_path):
    _split(tmp_path, 'a.png,"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,0,1\n'
                     'b.png,"(0, 0, 48, 48)",5,5,0,0,0,0,0,0,0,0\n'
                     'c.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n')
    assert majority_faces(tmp_path) == [("a.png", "happiness"), ("c.png", "neutral")]
    assert split_names(tmp_path / "FER2013Test") == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize("text, message", [
    ('a.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\nb.png,"(0, 0, 48, 48)",ten,0,0,0,0,0,0,0,0,0\n',
     "label.csv:2: vote counts must be numbers"),
    ('a.png,"(0, 0, 48, 48)",5,5,0,0,0,0,0,0,0,0\n', "label.csv has no image with a majority label"),
])
def test_majority_faces_bad_label_csv_is_one_line_naming_the_file(tmp_path, text, message):
    folder = _split(tmp_path, text)
    with pytest.raises(DatasetError) as err:
        majority_faces(tmp_path)
    assert str(err.value) == f"{folder}/{message}"


def test_split_names_without_label_csv_names_the_folder(tmp_path):
    with pytest.raises(DatasetError) as err:
        split_names(tmp_path / "FER2013Train")
    assert str(err.value) == f"{tmp_path}/FER2013Train/label.csv is missing: is {tmp_path} a FER+ folder?"


def test_majority_faces_on_real_ferplus_test(ferplus_dir):
    faces = majority_faces(ferplus_dir)
    assert len(faces) == 3152 and all((ferplus_dir / "FER2013Test" / name).is_file() for name, _ in faces[:50])
