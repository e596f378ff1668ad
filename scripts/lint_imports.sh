#!/usr/bin/env bash
# Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter.
# import-linter reads a package from its folder on disk, and training/, export/ and
# integrations/ are mapped into llm2vec_rag by setuptools' package-dir, so the package is laid
# out as installed in a temporary folder and linted there.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/llm2vec_rag"
cp -r llm2vec_rag/. "$stage/llm2vec_rag/"
for part in training export integrations; do
  cp -r "$part" "$stage/llm2vec_rag/$part"
done
root=$(pwd)
cd "$stage"  # lint-imports puts the working folder first on sys.path
PYTHONPATH="$stage" "$root/.venv/bin/lint-imports" "$root/pyproject.toml" --no-cache "$@"
