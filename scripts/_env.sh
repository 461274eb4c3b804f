# Sourced by scripts/demo and scripts/test: makes .venv exist and match pyproject.toml.
# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: Python 3.11 or newer is needed as '$python' (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi

venv="$root/.venv"
stamp="$venv/.installed"
want="$(cat pyproject.toml constraints.txt | "$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv ..." >&2
    "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing the exporter and its test tools into $venv ..." >&2
    # pip first: dependency groups (pyproject.toml, [dependency-groups]) need pip 25.1 or newer.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt \
        -e . --group dev
    echo "$want" >"$stamp"
fi
export PATH="$venv/bin:$PATH"
