"""The wheel works as installed: built from a copy of the source, installed without
dependencies into a fresh venv that sees this environment's packages, it brings the
console scripts and the gin configs, and `asvae-train` runs from another directory."""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT, TINY_MODEL

SCRIPTS = ("train", "evaluate", "export", "sample", "reproduce")


def _run(args, cwd, timeout=300):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _checked(args, cwd):
  r = _run(args, cwd)
  assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
  return r.stdout


def _build_wheel(tmp_path):
  """The wheel of a copy of the package source (the build leaves nothing in the repo)."""
  src = tmp_path / "src"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in ("asvae_tf", "gin"):
    shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
  for name in ("setup.py", "pyproject.toml"):
    shutil.copy(os.path.join(ROOT, name), src / name)
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
  _checked(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", "dist", "."], src)
  (wheel,) = (src / "dist").glob("asvae_tf-*.whl")
  return wheel


def _fresh_venv(tmp_path, wheel):
  """A venv with only the wheel installed; this environment's site-packages on its path
  (a .pth line adds the directory, but runs none of its .pth files, so the repository's
  editable asvae_tf stays invisible)."""
  venv = tmp_path / "venv"
  _checked([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
  python = venv / "bin" / "python"
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
  _checked(pip + ["--python", str(python), "install", "--no-deps", str(wheel)], tmp_path)
  query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
  site = _checked([str(python), "-c", query], tmp_path).strip()
  ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
  with open(os.path.join(site, "test_environment.pth"), "w") as f:
    f.write("".join(f"{path}\n" for path in sorted(ours)))
  return venv


@pytest.mark.slow(18)
def test_wheel_installs_and_runs_from_another_directory(tmp_path):
  venv = _fresh_venv(tmp_path, _build_wheel(tmp_path))
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()

  # The installed package, not the repository's; the shipped configs by bare name.
  check = (
    "import asvae_tf, asvae_tf.gin_config as g; "
    "print(asvae_tf.__file__); print(g.find_gin_file('mnist.gin'))"
  )
  paths = _checked([str(venv / "bin" / "python"), "-c", check], elsewhere).split()
  assert len(paths) == 2 and all(p.startswith(str(venv)) for p in paths), paths
  assert paths[1].endswith(os.path.join("asvae_tf", "configs", "mnist.gin"))
  for name in SCRIPTS:
    script = (venv / "bin" / f"asvae-{name}").read_text()
    assert script.startswith(f"#!{venv}") and f"asvae_tf.commands.{name} import run" in script

  train = str(venv / "bin" / "asvae-train")
  r = _run([train, "--helpfull"], elsewhere)
  assert r.returncode == 1, r.stderr[-3000:]  # absl exits 1 after printing the help
  assert "--gin_file" in r.stdout and "--model_dir" in r.stdout and "Traceback" not in r.stderr

  # The VAE and no periodic summaries, images or validations: the least tracing.
  quiet = ["summary_every", "image_every", "validate_every"]
  bindings = TINY_MODEL + [f"train.{k} = 0" for k in quiet] + ["model.objective = 'vae'"]
  args = ["--gin_file=mnist.gin", "--model_dir=m", "--strategy=default"]  # m: relative
  r = _run([train] + args + [f"--gin_param={b}" for b in bindings], elsewhere)
  assert r.returncode == 0, r.stderr[-3000:]
  checkpoints = sorted(os.listdir(elsewhere / "m" / "checkpoints"))
  assert "ckpt-2.index" in checkpoints, checkpoints
  assert (elsewhere / "m" / "operative_config.gin").is_file()
  assert not os.path.exists(os.path.join(ROOT, "m"))
