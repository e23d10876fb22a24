"""What `pip install` and `make demo` see: an SPDX license, TensorBoard, and the `hf` extra for the tour."""

from __future__ import annotations

import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _pyproject(repo_root):
    return tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it(repo_root):
    data = _pyproject(repo_root)
    assert data["project"]["license"] == "Apache-2.0"  # a table is deprecated by setuptools >= 77
    (setuptools,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=\s*(\d+)", setuptools).group(1)) >= 77


def test_tensorboard_is_installed_with_the_package(repo_root):
    assert any(d.startswith("tensorboard") for d in _pyproject(repo_root)["project"]["dependencies"])


def test_make_demo_installs_the_hf_extra(repo_root):
    makefile = (repo_root / "Makefile").read_text(encoding="utf-8")
    target = re.search(r"^demo:\s*(\S+)", makefile, re.M).group(1)
    recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert '".[hf]"' in recipe or "'.[hf]'" in recipe
