"""infra/Dockerfile builds the package the tests test, on a CUDA base, with the
versions the manifests expect; .dockerignore lets in what it needs and keeps
out what must not ship. Read as text: there is no Docker here."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.infra import dockerfile
from tests.infra.dockerfile import Instruction, commands, ignored, instructions, read_patterns
from tests.infra.manifests import DOCKERFILE, ROOT, cluster_specs, images

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
STEPS = instructions(DOCKERFILE.read_text())
CUDA_BASE = re.compile(r"(nvidia/cuda:\S+|rayproject/ray(-ml)?:\S+-(gpu|cu\d+))")


def _one(keyword: str) -> Instruction:
    found = [s for s in STEPS if s.keyword == keyword]
    assert len(found) == 1, f"{DOCKERFILE}: want one {keyword}, have {len(found)}"
    return found[0]


def _requirement(name: str) -> Requirement:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    (req,) = [r for r in reqs if r.name == name]
    return req


def _pip_installs() -> list[tuple[int, list[str]]]:
    """(step index, argv) of every `pip install` in a RUN."""
    found = []
    for i, step in enumerate(STEPS):
        if step.keyword == "RUN":
            for cmd in commands(step):
                argv = cmd.replace('"', "").split()
                if argv[:2] == ["pip", "install"] or argv[:4] == ["python", "-m", "pip", "install"]:
                    found.append((i, argv[argv.index("install") + 1 :]))
    return found


def _pinned(name: str) -> Version:
    pins = [a for _, argv in _pip_installs() for a in argv if re.match(rf"{name}(\[.*\])?==", a)]
    assert len(pins) == 1, f"{DOCKERFILE}: want one pinned {name}==..., have {pins}"
    return Version(pins[0].split("==")[1])


def test_base_is_a_cuda_image_with_python_311():
    base = _one("FROM").args.split()[0]
    assert CUDA_BASE.fullmatch(base), f"{DOCKERFILE}: FROM {base} is not a CUDA image"
    assert "$" not in base, f"{DOCKERFILE}: FROM {base} has an ARG without a default"
    if base.startswith("rayproject/"):
        assert "-py311-" in base, f"{DOCKERFILE}: FROM {base} is not Python 3.11"
    assert (
        Version("3.11") in Requirement(f"python{PYPROJECT['project']['requires-python']}").specifier
    )


def test_installs_the_project_from_its_pyproject_in_app():
    workdir = [i for i, s in enumerate(STEPS) if s.keyword == "WORKDIR" and s.args == "/app"]
    copies = [
        i
        for i, s in enumerate(STEPS)
        if s.keyword == "COPY"
        and [a for a in s.args.split() if not a.startswith("--")]
        in (
            [".", "/app"],
            [".", "."],
            [".", "/app/"],
        )
    ]
    assert workdir and copies, f"{DOCKERFILE}: want WORKDIR /app and COPY . /app"
    project = [i for i, argv in _pip_installs() if "." in argv or "/app" in argv]
    assert project, f"{DOCKERFILE}: no `pip install .` of the project"
    assert min(project) > max(min(workdir), min(copies)), (
        f"{DOCKERFILE}: `pip install .` runs before the repository is in /app"
    )
    for i in project:
        argv = dict(_pip_installs())[i]
        assert "-e" not in argv and "--editable" not in argv, f"{DOCKERFILE}: an editable install"


def test_torch_is_the_cuda_build_of_a_release_the_project_accepts():
    torch = _pinned("torch")
    assert torch in _requirement("torch").specifier, f"torch {torch} is outside pyproject's range"
    for _, argv in _pip_installs():
        if any(a.startswith("torch") for a in argv):
            assert not any("download.pytorch.org/whl/cpu" in a or "+cpu" in a for a in argv), (
                f"{DOCKERFILE}: installs the CPU build of torch: {argv}"
            )


def test_ray_is_one_version_in_base_pin_manifests_and_pyproject():
    base = _one("FROM").args.split()[0]
    tag = re.search(r":(\d+\.\d+\.\d+)", base)
    pinned = _pinned("ray")
    assert pinned in _requirement("ray").specifier, f"ray {pinned} is outside pyproject's range"
    if base.startswith("rayproject/"):
        assert tag and Version(tag.group(1)) == pinned, f"{DOCKERFILE}: base {base}, ray=={pinned}"
    for m, spec in cluster_specs():
        assert Version(spec["rayVersion"]) == pinned, (
            f"{m.name}: rayVersion {spec['rayVersion']}, the image has ray {pinned}"
        )


def test_gdal_comes_from_the_rasterio_wheels():
    for step in STEPS:
        if step.keyword == "RUN":
            assert not re.search(r"(apt-get|apt|apk|yum|dnf)\b.*\bgdal", step.args, re.I), (
                f"{DOCKERFILE}:{step.line}: installs a system GDAL"
            )


def test_manifests_and_launcher_run_one_image_tagged_with_the_project_version():
    named = images()
    assert len(set(named.values())) == 1, f"different images: {named}"
    image = next(iter(named.values()))
    assert image.rsplit(":", 1)[1] == PYPROJECT["project"]["version"], (
        f"image {image}: its tag is not the project's version {PYPROJECT['project']['version']}"
    )


def test_ray_containers_start_in_the_images_workdir():
    workdir = [s.args for s in STEPS if s.keyword == "WORKDIR"][-1]
    for m, spec in cluster_specs():
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            container = group["template"]["spec"]["containers"][0]
            assert container.get("workingDir") == workdir, (
                f"{m.name}: {container['name']} starts in {container.get('workingDir')}, "
                f"the entry points' relative configs are under {workdir}"
            )


PATTERNS = read_patterns(ROOT / ".dockerignore")


def _package_files(*folders: str) -> list[str]:
    """Every file of the packages (caches aside): all of it is code or data they load."""
    return [
        p.relative_to(ROOT).as_posix()
        for folder in folders
        for p in sorted((ROOT / folder).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]


def test_build_context_has_what_pip_install_and_the_entry_points_need():
    needed = ["pyproject.toml", PYPROJECT["project"]["readme"], "jobs/schedules.yaml"]
    needed += _package_files("unet", "cluster", "jobs")
    assert any(f.startswith("jobs/regions/") and f.endswith(".yaml") for f in needed)
    left_out = [f for f in needed if ignored(f, PATTERNS)]
    assert left_out == [], f".dockerignore leaves out {left_out}"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/config",
        ".env",
        "runs/x/store.zarr/zarr.json",
        "demo-out/map.zarr/zarr.json",
        "statemap.egg-info/PKG-INFO",
        "jobs/__pycache__/run.cpython-311.pyc",
        "tests/conftest.py",
        "infra/Dockerfile",
    ],
)
def test_build_context_keeps_out_what_must_not_ship(path):
    assert ignored(path, PATTERNS), f".dockerignore lets {path} into the image"


def test_dockerignore_matching_follows_docker():
    patterns = ["*", "!src/", "**/*.pyc", "!src/keep.pyc", "docs/*.md"]
    assert ignored("README.md", patterns)
    assert not ignored("src/a/b.py", patterns)
    assert ignored("src/a/b.pyc", patterns)
    assert not ignored("src/keep.pyc", patterns)
    assert not ignored("docs/x.md", ["docs/*/x.md"])
    assert ignored("docs/a/x.md", ["docs/*/x.md"])
    assert dockerfile.ignored("a/b/c", ["a/**/c"]) and dockerfile.ignored("a/c", ["a/**/c"])


def test_dockerfile_reader_joins_lines_and_scopes_args():
    text = (
        "ARG V=1.0\n"
        "FROM base:${V}\n"
        "ARG V\n"
        "ARG W=2\n"
        "# a comment\n"
        "RUN a $V \\\n"
        "    # inside\n"
        "    && b ${W}\n"
    )
    steps = instructions(text)
    assert [s.keyword for s in steps] == ["ARG", "FROM", "ARG", "ARG", "RUN"]
    assert steps[1].args == "base:1.0"
    assert commands(steps[4]) == ["a 1.0", "b 2"]
    assert instructions("ARG V=1\nFROM b\nRUN x $V\n")[2].args == "x $V"  # not redeclared
