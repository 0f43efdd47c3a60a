"""The data package on real data, offline: digits, the gestures zip, and the failure paths.

Downloads are only ever pointed at 127.0.0.1: an unused port for "offline", a local
http.server for "online", so no test touches the network.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from data import DataUnavailable, Split, load_dataset
from data import fashion as fashion_mod
from data import gestures as gestures_mod
from data.cache import resolve_data_dir
from data.digits import read_digits

REPO = Path(__file__).resolve().parents[1]
GESTURES_ZIP = REPO.parent / "shared" / "data" / "gestures-dataset.zip"


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own settings must not leak into what a test loads.
    for var in ("SWEEPMAP_DATA_DIR", "SWEEPMAP_GESTURES_ZIP", "SWEEPMAP_FASHION_PT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def gestures_zip(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not GESTURES_ZIP.is_file():
        pytest.skip(f"gestures zip not found at {GESTURES_ZIP}")
    monkeypatch.setenv("SWEEPMAP_GESTURES_ZIP", str(GESTURES_ZIP))
    return GESTURES_ZIP


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _point_download_at(monkeypatch: pytest.MonkeyPatch, module: object, url: str) -> None:
    source = module.SOURCE  # type: ignore[attr-defined]
    settings = source.settings.model_copy(update={"dataset_url": url})
    monkeypatch.setattr(module, "SOURCE", dataclasses.replace(source, settings=settings))


def _leftovers(data_dir: Path) -> list[str]:
    """What is left: a cache folder, a scratch folder, a temp file, a lock file; [] when the
    folder itself is gone (a failed first attempt removes the folder it made)."""
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


def _same(a: Split, b: Split) -> bool:
    lengths_equal = (a.lengths is None and b.lengths is None) or (
        a.lengths is not None and b.lengths is not None and torch.equal(a.lengths, b.lengths)
    )
    return torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and lengths_equal


# --- digits -------------------------------------------------------------------------------


def test_digits_images() -> None:
    ds = load_dataset("digits")
    assert ds.info.num_classes == 10 and not ds.info.is_sequence
    assert (ds.info.channels, ds.info.image_size) == (1, (8, 8))
    assert ds.train.x.shape[1:] == (1, 8, 8) and ds.train.x.dtype == torch.float32
    assert ds.train.y.dtype == torch.int64 and ds.train.lengths is None
    assert len(ds.train) + len(ds.valid) == 1797  # sklearn's digits
    assert len(ds.valid) == pytest.approx(0.2 * 1797, abs=10)
    assert float(ds.train.x.min()) >= 0.0 and float(ds.train.x.max()) == 1.0
    assert set(ds.valid.y.tolist()) == set(range(10))


def test_digits_are_what_sklearn_load_digits_returns() -> None:
    """We read sklearn's bundled file ourselves (its import is slow): same pixels, same labels,
    and sklearn itself not imported on the way."""
    code = (
        "import sys; from data.digits import read_digits; read_digits(); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    from sklearn.datasets import load_digits

    images, labels = read_digits()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)
    assert labels.dtype == np.int64 and images.shape == (1797, 8, 8)


def test_digits_sequences() -> None:
    images = load_dataset("digits", 3)
    seqs = load_dataset("digits", 3, as_sequence=True)
    assert seqs.info.is_sequence and (seqs.info.features, seqs.info.max_len) == (8, 8)
    assert seqs.info.channels == 0 and seqs.info.image_size == (0, 0)
    assert seqs.train.x.shape[1:] == (8, 8)
    assert seqs.train.lengths is not None and bool((seqs.train.lengths == 8).all())
    # the same split and pixels, read row by row
    assert torch.equal(seqs.train.x, images.train.x.squeeze(1))
    assert torch.equal(seqs.valid.y, images.valid.y)


def test_digits_split_is_fixed_by_split_seed() -> None:
    a, b, c = load_dataset("digits", 7), load_dataset("digits", 7), load_dataset("digits", 8)
    torch.manual_seed(123)  # the global RNG must not matter
    np.random.seed(123)
    d = load_dataset("digits", 7)
    assert _same(a.train, b.train) and _same(a.valid, b.valid) and _same(a.valid, d.valid)
    assert not torch.equal(a.valid.x, c.valid.x)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="digits, gestures, fashion"):
        load_dataset("mnist")


def test_data_dir_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(None) == Path.home() / ".cache" / "mads_datasets"
    monkeypatch.setenv("SWEEPMAP_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"


# --- gestures -----------------------------------------------------------------------------


def test_gestures_from_zip(gestures_zip: Path, tmp_path: Path) -> None:
    ds = load_dataset("gestures", data_dir=tmp_path)
    info = ds.info
    assert (info.num_classes, info.is_sequence, info.features) == (20, True, 3)
    assert ds.train.x.shape[1:] == ds.valid.x.shape[1:] == (info.max_len, 3)
    y = torch.cat([ds.train.y, ds.valid.y])
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(20))

    # Lengths and values against the zip, read here without the package.
    parsed = gestures_mod.load_parsed(tmp_path)
    with zipfile.ZipFile(gestures_zip) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".txt") and n.count("/") == 3)
        assert [n.split("/", 1)[1] for n in names] == parsed.paths
        for i in range(0, len(names), 97):
            raw = np.loadtxt(archive.open(names[i]))[:, 3:]
            assert int(parsed.lengths[i]) == len(raw)
            assert int(parsed.labels[i]) == int(names[i].split("/")[2]) - 1
            start = int(parsed.lengths[:i].sum())
            assert np.allclose(parsed.values[start : start + len(raw)].numpy(), raw)
    assert len(ds.train) + len(ds.valid) == len(parsed.paths)
    assert info.max_len == int(parsed.lengths.max())
    assert sorted(torch.cat([ds.train.lengths, ds.valid.lengths]).tolist()) == sorted(  # type: ignore[list-item]
        parsed.lengths.tolist()
    )

    for split in (ds.train, ds.valid):
        assert split.lengths is not None
        steps = torch.arange(info.max_len)[None, :] < split.lengths[:, None]  # (N, T)
        assert bool((split.x[~steps] == 0).all())  # padding is exactly zero
        assert bool((split.x[steps].abs().sum(-1) > 0).all())  # real steps are not
    # standardized with the train steps' own statistics
    assert ds.train.lengths is not None
    real = ds.train.x[torch.arange(info.max_len)[None, :] < ds.train.lengths[:, None]]
    assert torch.allclose(real.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(real.std(0), torch.ones(3), atol=1e-4)


def test_gestures_split_is_fixed_by_split_seed(gestures_zip: Path, tmp_path: Path) -> None:
    a = load_dataset("gestures", 1, data_dir=tmp_path)
    b = load_dataset("gestures", 1, data_dir=tmp_path)
    c = load_dataset("gestures", 2, data_dir=tmp_path)
    assert _same(a.train, b.train) and _same(a.valid, b.valid)
    assert not torch.equal(a.valid.x, c.valid.x)


def test_gestures_cached_after_first_load(
    monkeypatch: pytest.MonkeyPatch, gestures_zip: Path, tmp_path: Path
) -> None:
    first = load_dataset("gestures", data_dir=tmp_path)
    parsed = tmp_path / "gestures" / gestures_mod.PARSED
    assert parsed.is_file()
    monkeypatch.delenv("SWEEPMAP_GESTURES_ZIP")  # from here on only the cache can serve
    start = time.perf_counter()
    again = load_dataset("gestures", data_dir=tmp_path)
    assert time.perf_counter() - start < 2.0
    assert _same(first.valid, again.valid)

    parsed.write_bytes(parsed.read_bytes()[:100])  # a torn file is parsed again from the txt
    assert _same(first.valid, load_dataset("gestures", data_dir=tmp_path).valid)


def test_gestures_repairs_what_failed_builds_leave(gestures_zip: Path, tmp_path: Path) -> None:
    (tmp_path / "gestures").mkdir()  # what a failed mads_datasets download leaves behind
    (tmp_path / ".gestures.tmp-killed" / "gestures").mkdir(parents=True)  # a killed build's
    ds = load_dataset("gestures", data_dir=tmp_path)
    assert len(ds.train) > 0 and _leftovers(tmp_path) == ["gestures"]


def test_gestures_offline_fails_fast_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _point_download_at(monkeypatch, gestures_mod, f"http://127.0.0.1:{_unused_port()}/g.zip")
    start = time.perf_counter()
    with pytest.raises(DataUnavailable) as err:
        load_dataset("gestures", data_dir=tmp_path)
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert message.startswith("gestures:") and "SWEEPMAP_GESTURES_ZIP" in message
    assert "\n" not in message and gestures_mod.SOURCE.settings.digest in message
    assert _leftovers(tmp_path) == []


def test_a_folder_removed_by_another_failed_first_load_is_made_again(tmp_path: Path) -> None:
    """Two first loads at once: the first makes the folder and holds the lock while the second
    waits on it; the first fails and removes the folder it made. The second takes the lock in a
    new folder (it said "cannot write: .gestures.lock: No such file or directory" before)."""
    from data import cache

    data_dir = tmp_path / "cache"
    holding = threading.Event()

    def first_load_that_fails() -> None:
        with cache.locked(data_dir, "gestures"):
            holding.set()
            time.sleep(0.5)  # the second is waiting on the lock meanwhile

    first = threading.Thread(target=first_load_that_fails)
    first.start()
    assert holding.wait(10)
    with cache.locked(data_dir, "gestures"):
        assert (data_dir / ".gestures.lock").exists()
    first.join()
    assert not data_dir.exists()  # made again, so removed again: nothing left


@pytest.fixture
def loopback_server() -> Iterator[tuple[str, list[str]]]:
    """http://127.0.0.1:PORT serving the shared data folder; the list records the requests."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            requests.append(self.path)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no access log on the test's stderr

    handler = functools.partial(Handler, directory=str(GESTURES_ZIP.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_gestures_failed_download_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loopback_server: tuple[str, list[str]]
) -> None:
    base, requests = loopback_server
    _point_download_at(monkeypatch, gestures_mod, f"{base}/missing.zip")  # a 404
    with pytest.raises(DataUnavailable, match=r"gestures: .*SWEEPMAP_GESTURES_ZIP"):
        load_dataset("gestures", data_dir=tmp_path)
    assert requests == ["/missing.zip"] and _leftovers(tmp_path) == []


def test_gestures_download_through_mads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loopback_server: tuple[str, list[str]]
) -> None:
    if not GESTURES_ZIP.is_file():
        pytest.skip(f"gestures zip not found at {GESTURES_ZIP}")
    base, requests = loopback_server
    _point_download_at(monkeypatch, gestures_mod, f"{base}/{GESTURES_ZIP.name}")
    downloaded = load_dataset("gestures", data_dir=tmp_path / "a")
    monkeypatch.setenv("SWEEPMAP_GESTURES_ZIP", str(GESTURES_ZIP))
    from_zip = load_dataset("gestures", data_dir=tmp_path / "b")
    assert requests == [f"/{GESTURES_ZIP.name}"]
    assert _same(downloaded.valid, from_zip.valid)
    assert _leftovers(tmp_path / "a") == ["gestures"]  # mads removed the zip; no scratch


def test_gestures_zip_with_wrong_md5(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "gestures-dataset.zip"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("gestures-dataset/U01/01/01.txt", "1 2 3 0.1 0.2 0.3\n")
    monkeypatch.setenv("SWEEPMAP_GESTURES_ZIP", str(fake))
    data_dir = tmp_path / "cache"
    with pytest.raises(DataUnavailable, match=r"gestures: SWEEPMAP_GESTURES_ZIP=.* has md5 "):
        load_dataset("gestures", data_dir=data_dir)
    assert _leftovers(data_dir) == []


def test_gestures_zip_env_pointing_at_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWEEPMAP_GESTURES_ZIP", str(tmp_path / "nope.zip"))
    with pytest.raises(DataUnavailable, match=r"nope\.zip is not a file"):
        load_dataset("gestures", data_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


_CHILD = """
import hashlib, sys
from pathlib import Path
from data import load_dataset
ds = load_dataset("gestures", split_seed=5, data_dir=Path(sys.argv[1]))
h = hashlib.sha256()
for split in (ds.train, ds.valid):
    for t in (split.x, split.y, split.lengths):
        h.update(t.numpy().tobytes())
print(h.hexdigest())
"""


def test_gestures_concurrent_first_loads(gestures_zip: Path, tmp_path: Path) -> None:
    # Real processes on one empty data dir, as parallel sweep agents start: one extracts
    # and parses under the lock, the other waits and reads the result.
    env = {**os.environ, "SWEEPMAP_GESTURES_ZIP": str(gestures_zip)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [child.communicate(timeout=120) for child in children]
    for child, (_, stderr) in zip(children, results, strict=True):
        assert child.returncode == 0, stderr
        assert stderr == ""  # no progress bars or log lines from mads_datasets
    digests = [stdout.strip() for stdout, _ in results]
    ds = load_dataset("gestures", split_seed=5, data_dir=tmp_path)
    here = hashlib.sha256()
    for split in (ds.train, ds.valid):
        for t in (split.x, split.y, split.lengths):
            assert t is not None
            here.update(t.numpy().tobytes())
    assert digests == [here.hexdigest()] * 2
    assert _leftovers(tmp_path) == ["gestures"]


# --- fashion ------------------------------------------------------------------------------


def test_fashion_offline_fails_fast_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _point_download_at(monkeypatch, fashion_mod, f"http://127.0.0.1:{_unused_port()}/f.pt")
    start = time.perf_counter()
    with pytest.raises(DataUnavailable) as err:
        load_dataset("fashion", data_dir=tmp_path)
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert message.startswith("fashion:") and "SWEEPMAP_FASHION_PT" in message
    assert "\n" not in message
    assert _leftovers(tmp_path) == []


def test_fashion_from_a_local_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The real file cannot be had offline: a tiny one in mads' layout, its md5 swapped in.
    gen = torch.Generator().manual_seed(0)
    tiny = {
        "traindata": torch.randint(0, 256, (30, 28, 28), generator=gen, dtype=torch.uint8),
        "trainlabels": torch.arange(30) % 10,
        "testdata": torch.randint(0, 256, (10, 28, 28), generator=gen, dtype=torch.uint8),
        "testlabels": torch.arange(10),
    }
    path = tmp_path / "fashionmnist.pt"
    torch.save(tiny, path)
    source = fashion_mod.SOURCE
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    settings = source.settings.model_copy(update={"digest": digest})
    monkeypatch.setattr(fashion_mod, "SOURCE", dataclasses.replace(source, settings=settings))
    monkeypatch.setenv("SWEEPMAP_FASHION_PT", str(path))

    images = load_dataset("fashion", data_dir=tmp_path / "cache")
    assert (images.info.channels, images.info.image_size) == (1, (28, 28))
    assert images.train.x.shape == (30, 1, 28, 28) and images.valid.x.shape == (10, 1, 28, 28)
    assert torch.equal(images.train.x.squeeze(1), tiny["traindata"].float() / 255)
    assert images.valid.y.dtype == torch.int64
    assert torch.equal(images.valid.y, tiny["testlabels"])
    seqs = load_dataset("fashion", as_sequence=True, data_dir=tmp_path / "cache")
    assert seqs.info.is_sequence and (seqs.info.features, seqs.info.max_len) == (28, 28)
    assert seqs.train.lengths is not None and bool((seqs.train.lengths == 28).all())
    assert (tmp_path / "cache" / "fashionmnist" / "fashionmnist.pt").is_file()


def test_split_to_device_keeps_everything() -> None:
    ds = load_dataset("digits", as_sequence=True).to(torch.device("cpu"))
    assert ds.train.lengths is not None and ds.train.lengths.device.type == "cpu"
    with pytest.raises(ValueError, match="disagree"):
        Split(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64), None)
