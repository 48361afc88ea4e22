"""Malformed files under input/config, through the real ``train`` process: each is the user's error (exit 1, one
line in output/failure naming the file and what is wrong), never an internal error with a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HP = {"feature_dim": "4", "num_factors": "2", "predictor_type": "regressor", "epochs": "1"}
CHANNELS = {"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}}
RESOURCES = {"current_host": "algo-1", "hosts": ["algo-1"]}

HYPERPARAMETERS, INPUT, RESOURCE = "hyperparameters.json", "inputdataconfig.json", "resourceconfig.json"
CASES = [
    # (file, content, what the failure says besides the file's name)
    (HYPERPARAMETERS, b'{"feature_dim": "4\xff"}', "is not UTF-8 text: byte 0xff at offset 18"),
    (HYPERPARAMETERS, "{\"feature_dim\": \"4\"}".encode("utf-16"), "is not UTF-8 text"),
    (HYPERPARAMETERS, b'{"feature_dim": ', "is not valid JSON"),
    (HYPERPARAMETERS, b"[" * 100_000, "is not valid JSON"),
    (HYPERPARAMETERS, b'["feature_dim", "4"]', "must hold a JSON object, found an array"),
    (HYPERPARAMETERS, b'"epochs=1"', "must hold a JSON object, found a string"),
    (HYPERPARAMETERS, json.dumps({**HP, "epochs": ["1"]}).encode(), "epochs=['1'] is not valid"),
    (HYPERPARAMETERS, json.dumps({**HP, "num_factors": {"value": 2}}).encode(), "num_factors={'value': 2}"),
    (HYPERPARAMETERS, None, "is not a readable file"),  # a directory in its place
    (INPUT, b"\x80\x81", "is not UTF-8 text"),
    (INPUT, b"{'train': {}}", "is not valid JSON"),
    (INPUT, b"42", "must hold a JSON object, found a number"),
    (INPUT, json.dumps({"train": "text/csv"}).encode(), "for channel 'train', found a string"),
    (INPUT, json.dumps({"train": {"ContentType": ["text/csv"]}}).encode(),
     "ContentType of channel 'train' in"),
    (INPUT, json.dumps({"train": {"TrainingInputMode": 1}}).encode(), "must be a string, found a number"),
    (INPUT, json.dumps({"train": {"RecordWrapperType": {}}}).encode(), "RecordWrapperType of channel 'train'"),
    (RESOURCE, b"\xfe\xff\x00{", "is not UTF-8 text"),
    (RESOURCE, b"null null", "is not valid JSON"),
    (RESOURCE, b"[]", "must hold a JSON object, found an array"),
    (RESOURCE, json.dumps({"current_host": 1}).encode(), "current_host in"),
    (RESOURCE, json.dumps({"hosts": "algo-1"}).encode(), "hosts in"),
    (RESOURCE, json.dumps({"hosts": ["algo-1", 2]}).encode(), "must be an array of host names"),
]


@pytest.mark.parametrize(("name", "content", "says"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_malformed_config_file_is_the_users_error(tmp_path, name, content, says):
    config = tmp_path / "input/config"
    config.mkdir(parents=True)
    for file, value in ((HYPERPARAMETERS, HP), (INPUT, CHANNELS), (RESOURCE, RESOURCES)):
        (config / file).write_text(json.dumps(value))
    (tmp_path / "input/data/train").mkdir(parents=True)
    (tmp_path / "input/data/train/rows.csv").write_text("1,0,1,0,1\n0,1,0,1,0\n")
    target = config / name
    if content is None:
        target.unlink()
        target.mkdir()
    else:
        target.write_bytes(content)
    proc = subprocess.run([sys.executable, str(ROOT / "train")], env={"SAGEMAKER_BASE_DIR": str(tmp_path),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    failure = (tmp_path / "output/failure").read_text()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failure.count("\n") == 1 and "Traceback" not in proc.stdout + proc.stderr, failure
    assert str(target) in failure and says in failure, failure
    assert not (tmp_path / "model").exists()
