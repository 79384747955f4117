#!/usr/bin/env bash
# Install the *lowest* versions pyproject.toml declares, in a fresh venv, and run the unit tests:
# the dependency floors are then tested facts, not guesses (result: docs/dependencies.md).
#
#   tools/lowest_versions.sh                       # unit tests
#   LOWEST_TESTS="tests/unit tests/integration/test_sft.py" tools/lowest_versions.sh
#
# Every `name>=X` of `dependencies` and of the extras in LOWEST_EXTRAS (default: dev and math)
# becomes a `name==X` constraint; pip resolves everything else (transitive packages) freely,
# so an install that cannot satisfy a floor fails here instead of on a user's machine.
# torch is the exception: a fresh torch install would be a multi-GB CUDA build, so the venv sees
# this interpreter's torch (it must be a version pyproject allows; CI and the tests use 2.13.0 CPU)
# through a .pth file naming a folder that holds torch alone, and pip treats it as installed.
set -euo pipefail
unset PYTHONPATH  # the venv imports this checkout through its editable install, nothing else

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${LOWEST_VENV:-$(mktemp -d /tmp/ladder-lowest.XXXXXX)}"
EXTRAS="${LOWEST_EXTRAS:-dev,math}"
TESTS="${LOWEST_TESTS:-tests/unit}"

echo "== fresh venv: $VENV ($("$PYTHON" --version))"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
VPY="$VENV/bin/python"

echo "== constraints: the lowest version of every declared dependency (extras: $EXTRAS)"
"$PYTHON" - "$ROOT/pyproject.toml" "$EXTRAS" >"$VENV/constraints.txt" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
requirements = list(project["dependencies"])
for extra in filter(None, sys.argv[2].split(",")):
    requirements += project["optional-dependencies"][extra]
for req in requirements:
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(.*)$", req)
    name, spec = m.group(1), m.group(2)
    floor = re.search(r">=\s*([0-9][^,;\s]*)", spec)
    if name == "torch" or floor is None:  # torch: this interpreter's; no floor: nothing to pin
        continue
    print(f"{name}=={floor.group(1)}")
EOF
cat "$VENV/constraints.txt"

echo "== torch from this interpreter"
TORCH_SITE="$VENV/torch-site"
mkdir -p "$TORCH_SITE"
"$PYTHON" - "$TORCH_SITE" <<'EOF'
import importlib.metadata as md, os, sys
dist = md.distribution("torch")
site = str(dist.locate_file(""))
tops = {str(f).split("/")[0] for f in dist.files if not str(f).startswith("..")}
for top in sorted(tops):
    src = os.path.join(site, top)
    if os.path.exists(src) and not top.endswith(".py") and top != "bin":
        os.symlink(src, os.path.join(sys.argv[1], top))
print("torch", dist.version, "from", site, "->", sorted(tops))
EOF
"$VPY" -c "import site, sys; print(site.getsitepackages()[0])" | {
    read -r VSITE
    echo "$TORCH_SITE" >"$VSITE/zz-ladder-system-torch.pth"
}

echo "== install ladder[$EXTRAS] under the constraints"
"$VPY" -m pip install -q --upgrade "pip>=24" >/dev/null
"$VPY" -m pip install -c "$VENV/constraints.txt" -e "$ROOT[$EXTRAS]"
"$VPY" -m pip check

echo "== installed versions of the declared dependencies"
"$VPY" - "$VENV/constraints.txt" <<'EOF'
import importlib.metadata as md, sys
from packaging.version import Version
for line in open(sys.argv[1]):
    name, want = line.strip().split("==")
    got = md.version(name)
    print(f"{name:14} {got:10} {'(lowest)' if Version(got) == Version(want) else '(NOT the lowest: ' + want + ')'}")
print(f"{'torch':14} {md.version('torch'):10} (this interpreter's)")
EOF

echo "== tests: $TESTS"
cd "$ROOT"
# HF_HUB_OFFLINE etc. are set by tests/conftest.py; the venv's ladder is this checkout (editable).
# The module-size check reads source text and is the same under every version: not this script's question.
"$VPY" -m pytest $TESTS -q -p no:cacheprovider -k "not test_no_module_is_past_400_lines"
echo "== lowest versions: OK"
