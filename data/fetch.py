"""Getting a mads_datasets folder into the data dir: a local file, else mads' own download.

mads_datasets downloads straight into its cache folder and creates that folder first, so a
failed download leaves an empty folder that makes every later call skip the download. Here
everything is built in a scratch folder beside the cache and renamed into place when whole.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import mads_datasets.datasets.torchdatasets as mads_torchdatasets
import mads_datasets.datatools as mads_datatools
from mads_datasets.base import AbstractDatasetFactory
from mads_datasets.settings import DatasetSettings
from tqdm import tqdm

from data.cache import first_line, install, md5, reachable, staging
from data.types import DataUnavailable


@dataclass(frozen=True)
class Source:
    name: str  # our name, for messages: "gestures"
    settings: DatasetSettings  # url, filename, cache folder name, md5
    factory: type[AbstractDatasetFactory]  # the mads_datasets class that downloads it
    env: str  # the variable naming a local copy of settings.filename
    is_complete: Callable[[Path], bool]  # is data_dir/settings.name a whole cache?

    def folder(self, data_dir: Path) -> Path:
        return data_dir / self.settings.name

    def how_to_provide(self) -> str:
        return f"set {self.env}=/path/to/{self.settings.filename} (md5 {self.settings.digest})"


@contextlib.contextmanager
def quiet_mads() -> Iterator[None]:
    """No mads_datasets progress bars: agents print one line per epoch, nothing else."""
    quiet = functools.partial(tqdm, disable=True)
    with (
        mock.patch.object(mads_datatools, "tqdm", quiet),
        mock.patch.object(mads_torchdatasets, "tqdm", quiet),
    ):
        yield


def obtain(source: Source, data_dir: Path) -> Path:
    """The complete cache folder of `source`, building it if needed. Hold the lock to call."""
    target = source.folder(data_dir)
    if source.is_complete(target):
        return target
    with staging(data_dir, source.settings.name) as tmp:
        built = tmp / source.settings.name
        local = os.environ.get(source.env)
        if local:
            _from_local(source, Path(local), built)
        else:
            _from_download(source, tmp, target)
        if not source.is_complete(built):
            raise DataUnavailable(
                f"{source.name}: the data in {source.settings.filename} is incomplete; "
                f"{source.how_to_provide()}"
            )
        install(built, target)
    return target


def _from_local(source: Source, path: Path, built: Path) -> None:
    if not path.is_file():
        raise DataUnavailable(
            f"{source.name}: {source.env}={path} is not a file; {source.how_to_provide()}"
        )
    got = md5(path)
    if got != source.settings.digest:
        raise DataUnavailable(
            f"{source.name}: {source.env}={path} has md5 {got}, expected "
            f"{source.settings.digest}; is it the right file?"
        )
    built.mkdir()
    # The same layout mads_datasets' download leaves: the archive unpacked, the archive gone.
    if source.settings.unzip:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(built)
    else:
        shutil.copyfile(path, built / source.settings.filename)


def _from_download(source: Source, tmp: Path, target: Path) -> None:
    url = str(source.settings.dataset_url)
    offline = (
        f"{source.name}: not in {target} and the download failed (offline?); "
        f"{source.how_to_provide()}"
    )
    # mads' requests.get has no timeout: offline it could hang; fail within seconds instead.
    if not reachable(url):
        raise DataUnavailable(offline)
    factory = source.factory(source.settings, datadir=tmp)
    try:
        with quiet_mads():
            factory.download_data()  # downloads, checks the md5, unpacks into tmp/<name>
    except Exception as exc:
        raise DataUnavailable(f"{offline} [{first_line(exc)}]") from exc
