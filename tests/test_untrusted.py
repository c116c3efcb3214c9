"""Files from elsewhere: pickle checkpoints need an opt-in, and paths named in files stay inside their root."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tracect.config import load_config
from tracect.data.layout import DatasetError, load_dataset
from tracect.data.reports import ReportsError, read_reports
from tracect.io import VolumeReadError, read_volume
from tracect.model.weights import CheckpointError, checkpoint_hash, load_model, resolve_checkpoint


# ---------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def tiny():
    """A tiny denoiser's config and two different state dicts (weights and EMA)."""
    from tracect.model.denoiser import FrameDenoiser

    config = load_config("tiny")
    torch.manual_seed(0)
    weights = FrameDenoiser(config.model).state_dict()
    torch.manual_seed(1)
    ema = FrameDenoiser(config.model).state_dict()
    return config, weights, ema


def _folder(path, config):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config.to_json()))
    return path


def _same(model, state) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_pickle_checkpoint_is_refused_with_the_opt_in_named(tmp_path, tiny):
    config, weights, _ = tiny
    torch.save(weights, _folder(tmp_path, config) / "weights.pt")
    with pytest.raises(CheckpointError, match=r"pickle.*allow_pickle=True.*--allow-pickle"):
        load_model(tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="allow_pickle"):
        resolve_checkpoint(tmp_path / "weights.pt")


def test_pickle_without_a_pickle_suffix_is_still_refused(tmp_path, tiny):
    config, weights, _ = tiny
    torch.save(weights, _folder(tmp_path, config) / "weights")
    with pytest.raises(CheckpointError, match="allow_pickle"):
        load_model(tmp_path / "weights")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(tmp_path / "notes.txt", allow_pickle=True)


def test_pickle_state_dict_loads_with_the_opt_in(tmp_path, tiny):
    config, weights, ema = tiny
    file = _folder(tmp_path, config) / "weights.pt"
    torch.save(weights, file)
    model, cfg, ckpt = load_model(file, allow_pickle=True)
    assert _same(model, weights) and cfg == config and ckpt == file
    assert len(checkpoint_hash(ckpt)) == 64
    # a trainer's bundle: the EMA weights by default, the raw ones on request
    torch.save({"model": weights, "ema": ema, "step": 7}, file)
    assert _same(load_model(file, allow_pickle=True)[0], ema)
    assert _same(load_model(file, ema=False, allow_pickle=True)[0], weights)


class _RunsCode:
    """Unpickling this calls ``os.mkdir(path)``: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_opt_in_still_refuses_pickles_that_are_not_state_dicts(tmp_path, tiny):
    config, _, _ = tiny
    file = _folder(tmp_path, config) / "evil.pt"
    file.write_bytes(pickle.dumps({"w": _RunsCode(tmp_path / "ran")}, protocol=2))
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        load_model(file, allow_pickle=True)
    assert not (tmp_path / "ran").exists()
    torch.save({"w": [1, 2]}, file)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_model(file, allow_pickle=True)


def test_pickle_needs_the_config_beside_it(tmp_path, tiny):
    torch.save(tiny[1], tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path / "weights.pt", allow_pickle=True)


def test_safetensors_checkpoint_loads_and_bad_ones_are_named(tmp_path, tiny):
    config, weights, ema = tiny
    ckpt = _folder(tmp_path / "run" / "checkpoints" / "step_0000001", config)
    save_file(weights, str(ckpt / "model.safetensors"))
    save_file(ema, str(ckpt / "ema.safetensors"))
    (tmp_path / "run" / "latest").write_text("step_0000001\n")
    model, _, found = load_model(tmp_path / "run")
    assert found == ckpt and _same(model, ema)
    (ckpt / "ema.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match="ema.safetensors: unreadable weights"):
        load_model(ckpt)
    save_file({"w": torch.zeros(2)}, str(ckpt / "ema.safetensors"))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(ckpt)


@pytest.mark.parametrize("name", ["../../elsewhere", "/tmp", "..", ""])
def test_latest_must_name_a_checkpoint_folder(tmp_path, name):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "latest").write_text(name + "\n")
    with pytest.raises(CheckpointError):
        resolve_checkpoint(tmp_path)


# ---------------------------------------------------------------- paths named in dataset files

VOCAB = {"name": "mine", "labels": {"1": "liver", "2": "spleen"}}


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (tmp_path / "outside.json").write_text(json.dumps(VOCAB))
    return root


def _vocab(root, spec, **kw):
    (root / "dataset.json").write_text(json.dumps({"vocabulary": spec}))
    return load_dataset(root, **kw).vocabulary


def test_vocabulary_file_inside_the_dataset_loads(dataset):
    (dataset / "labels").mkdir()
    (dataset / "labels" / "v.json").write_text(json.dumps(VOCAB))
    assert _vocab(dataset, "labels/v.json").labels == {1: "liver", 2: "spleen"}
    assert _vocab(dataset, "labels/../labels/v.json").name == "mine"


@pytest.mark.parametrize("spec", ["../outside.json", "labels/../../outside.json"])
def test_dot_dot_escapes_are_refused(dataset, spec):
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        _vocab(dataset, spec)
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        _vocab(dataset, spec, allow_absolute=True)  # the opt-in is for absolute paths only


def test_absolute_paths_need_the_opt_in(dataset):
    outside = str(dataset.parent / "outside.json")
    with pytest.raises(DatasetError, match="absolute paths are not allowed"):
        _vocab(dataset, outside)
    assert _vocab(dataset, outside, allow_absolute=True).name == "mine"


def test_symbolic_links_out_of_the_dataset_are_refused(dataset):
    (dataset / "v.json").symlink_to(dataset.parent / "outside.json")
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        _vocab(dataset, "v.json")
    (dataset / "sub").symlink_to(dataset.parent, target_is_directory=True)
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        _vocab(dataset, "sub/outside.json")


def test_listed_images_may_be_links_the_folder_owner_made(dataset):
    from conftest import save_nifti, toy_case

    hu, mask, aff = toy_case()
    save_nifti(dataset.parent / "store" / "ct.nii.gz", hu, aff)
    (dataset / "images" / "c1.nii.gz").symlink_to(dataset.parent / "store" / "ct.nii.gz")
    assert [c.case_id for c in load_dataset(dataset).cases] == ["c1"]


@pytest.mark.parametrize("content,match", [
    ({"vocabulary": 3}, "'vocabulary' must be"),
    ({"vocabulary": {"labels": [1, 2]}}, "inline vocabulary"),
    ({"vocabulary": "missing.json"}, "vocabulary file 'missing.json'"),
    ({"split": ["case0"]}, "'split' must be an object"),
    ({"split": {"train": "case0"}}, "must be a list of case ids"),
    ({"split": {"train": ["a"], "test": ["a"]}}, "in splits 'train' and 'test'"),
])
def test_wrong_types_in_dataset_json(dataset, content, match):
    (dataset / "dataset.json").write_text(json.dumps(content))
    with pytest.raises(DatasetError, match=match):
        load_dataset(dataset)


@pytest.mark.parametrize("line", ['{"case": "../../x", "report": "r"}', '{"case": "a/b", "report": "r"}',
                                  '{"case": "..", "report": "r"}', '{"case": "c", "report": ["r"]}'])
def test_report_case_ids_are_plain_names(tmp_path, line):
    (tmp_path / "reports.jsonl").write_text(line + "\n")
    with pytest.raises(ReportsError, match="reports.jsonl:1"):
        read_reports(tmp_path)


def test_ct_rate_volume_names_keep_only_the_file_name(tmp_path):
    (tmp_path / "reports.csv").write_text("VolumeName,Findings_EN,Impressions_EN\n"
                                          "../../train_1_a_1.nii.gz,Normal.,None.\n")
    assert list(read_reports(tmp_path)) == ["train_1_a_1"]


# ---------------------------------------------------------------- a detached NRRD header names its data file

def _nhdr(folder, data_file: str):
    folder.mkdir(exist_ok=True)
    (folder / "v.nhdr").write_text("NRRD0004\ntype: int16\ndimension: 3\nsizes: 5 4 3\nendian: little\n"
                                   f"encoding: raw\nspace: RAS\ndata file: {data_file}\n\n")
    return folder / "v.nhdr"


def test_detached_nrrd_data_beside_its_header_loads(tmp_path):
    (tmp_path / "images").mkdir()
    np.arange(60, dtype=np.int16).tofile(tmp_path / "images" / "v.raw")
    vol = read_volume(_nhdr(tmp_path / "images", "v.raw"))
    assert vol.shape == (5, 4, 3) and vol.array[1, 0, 0] == 1


@pytest.mark.parametrize("data_file", ["../outside.raw", "{abs}", "sub/../../outside.raw", "link.raw"])
def test_detached_nrrd_data_outside_its_folder_is_refused(tmp_path, data_file):
    np.zeros(60, np.int16).tofile(tmp_path / "outside.raw")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "link.raw").symlink_to(tmp_path / "outside.raw")
    header = _nhdr(tmp_path / "images", data_file.format(abs=tmp_path / "outside.raw"))
    with pytest.raises(VolumeReadError, match="v.nhdr: data file .* is outside"):
        read_volume(header)
