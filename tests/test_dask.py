"""The Dask adapter on a real LocalCluster of two worker processes: same bytes, failures named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec.batch import EncodeOptions, output_paths
from kmcodec.choose_k import FitSettings
from kmcodec.shared_batch import fit_files

distributed = pytest.importorskip("distributed")
from kmcodec import dask_shared  # noqa: E402  (needs distributed)


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def stills(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.integers(0, 5, (14, 11, 3)) * 60 + i).astype(np.uint8)).save(tmp_path / f"s{i}.png")
    return tmp_path, [f"s{i}.png" for i in range(5)]


def kmq(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_dask_writes_the_same_bytes_as_the_local_path(stills, scheduler, monkeypatch):
    work, names = stills
    monkeypatch.chdir(work)  # relative paths, as a user gives them
    monkeypatch.setattr(dask_shared, "MERGE_FAN_IN", 2)  # a tree of several levels from 5 inputs
    paths = [Path(n) for n in names]
    (work / "dask").mkdir()
    settings = FitSettings(seed=1)
    local = fit_files(paths, 6, settings)
    with distributed.Client(scheduler) as client:
        remote = dask_shared.fit_files(client, paths, 6, settings)
        assert remote.fit.palette.tobytes() == local.fit.palette.tobytes() and not remote.errors
        assert remote.fit.cost == local.fit.cost
        options = EncodeOptions(palette=remote.fit.palette, palette_source="shared")
        outcomes = dask_shared.runner(client)(output_paths(paths, Path("dask")), options)
    assert [o.error for o in outcomes] == [None] * 5
    assert [o.summary["output"] for o in outcomes] == [f"dask/s{i}.kmq" for i in range(5)]  # as given
    for path in paths:
        expected = kmcodec.encode(Image.open(path), palette=local.fit.palette)
        assert (work / "dask" / path.with_suffix(".kmq").name).read_bytes() == expected


def test_a_task_raising_on_one_input_names_it_and_the_rest_are_written(stills, scheduler):
    work, names = stills
    (work / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = kmq("encode", "bad.png", *names, "--shared-palette", "-k", 4, "--out-dir", "out", "--scheduler", scheduler, cwd=work)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("kmq: error: ")]
    assert len(errors) == 1 and errors[0].startswith("kmq: error: bad.png: cannot read ")
    assert f"fitted to {len(names)} of {len(names) + 1} inputs" in result.stderr
    assert sorted(p.name for p in (work / "out").iterdir()) == sorted(n.replace(".png", ".kmq") for n in names)
