"""Config readers: every file optional, paths from SAGEMAKER_BASE_DIR, no side effects."""

import json

import pytest

from container.config import read_hyperparameters, read_input_data_config, read_resource_config
from container.errors import ClientError
from container.paths import SageMakerPaths


def test_paths_follow_the_base_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    paths = SageMakerPaths.from_env()
    assert paths.hyperparameters_file == tmp_path / "input/config/hyperparameters.json"
    assert paths.channel_dir("train") == tmp_path / "input/data/train"
    assert paths.pipe_path("train", 3) == tmp_path / "input/data/train_3"
    assert paths.failure_file == tmp_path / "output/failure"
    assert paths.model_dir == tmp_path / "model"
    monkeypatch.delenv("SAGEMAKER_BASE_DIR")
    assert str(SageMakerPaths.from_env().base) == "/opt/ml"


def test_absent_files_give_defaults(tmp_path):
    paths = SageMakerPaths(tmp_path)
    assert read_hyperparameters(paths) == {}
    assert read_input_data_config(paths) == {}
    resources = read_resource_config(paths)
    assert resources.current_host == "algo-1" and resources.hosts == ["algo-1"]
    assert list(tmp_path.iterdir()) == []


def _write(paths, name, value):
    paths.input_config.mkdir(parents=True, exist_ok=True)
    (paths.input_config / name).write_text(value if isinstance(value, str) else json.dumps(value))


def test_reads_what_sagemaker_writes(tmp_path):
    paths = SageMakerPaths(tmp_path)
    _write(paths, "inputdataconfig.json", {
        "train": {"ContentType": "text/csv", "TrainingInputMode": "Pipe", "S3DistributionType": "ShardedByS3Key",
                  "RecordWrapperType": "RecordIO"},
        "test": {"TrainingInputMode": "File"},
    })
    _write(paths, "resourceconfig.json", {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"],
                                          "network_interface_name": "eth1"})
    channels = read_input_data_config(paths)
    assert channels["train"].content_type == "text/csv" and channels["train"].input_mode == "Pipe"
    assert channels["train"].record_wrapper == "RecordIO"
    assert channels["test"].content_type is None  # not declared: each file's first bytes decide
    assert read_resource_config(paths).hosts == ["algo-1", "algo-2"]


def test_broken_json_names_the_file(tmp_path):
    paths = SageMakerPaths(tmp_path)
    _write(paths, "hyperparameters.json", '{"epochs": ')
    with pytest.raises(ClientError, match=r"hyperparameters\.json is not valid JSON"):
        read_hyperparameters(paths)
    _write(paths, "hyperparameters.json", "[1, 2]")
    with pytest.raises(ClientError, match="must hold a JSON object"):
        read_hyperparameters(paths)
