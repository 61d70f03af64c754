#!/usr/bin/env bash
# Creates ./.venv (if missing) and installs into it, at the exact tested versions of
# constraints.txt: the development tools (requirements.txt), then asvae_tf editable with its
# install_requires (setup.py's compatible ranges) and console scripts (asvae-train, ...).
# Idempotent and quick to rerun: pip only checks what is installed, and the package is
# reinstalled only when setup.py or constraints.txt changed since the last complete run
# (or it is missing). See docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install -c constraints.txt --upgrade pip
"${pip[@]}" install -c constraints.txt -r requirements.txt
stamp=.venv/asvae_tf-setup.sha256
want=$(cat setup.py constraints.txt | sha256sum | cut -d" " -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "${pip[@]}" show asvae_tf >/dev/null 2>&1; then
  "${pip[@]}" install -c constraints.txt --no-build-isolation -e .
  echo "$want" >"$stamp"
fi
# Every installed package's requirements hold (e.g. nothing was uninstalled by hand).
.venv/bin/python -m pip check >/dev/null || .venv/bin/python -m pip check
