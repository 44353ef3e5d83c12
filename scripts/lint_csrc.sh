#!/usr/bin/env bash
# clang-format check of csrc/ (*.cpp *.h *.cu) against the repo's .clang-format, run by `make lint`: exits
# non-zero, naming the lines, when any file differs from its formatted self (`make format` rewrites them).
# clang-format is taken from $CLANG_FORMAT, else from PATH. Its version is pinned in requirements-dev.txt:
# another version may format differently, so a mismatch is reported next to any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-$(command -v clang-format || true)}
if [ -z "$CLANG_FORMAT" ] || [ ! -x "$CLANG_FORMAT" ]; then
  echo "lint_csrc: clang-format not found (pip install the version in requirements-dev.txt, or set CLANG_FORMAT=...)" >&2
  exit 1
fi
version=$("$CLANG_FORMAT" --version | sed -n 's/.*clang-format version \([0-9.]*\).*/\1/p')
pinned=$(sed -n 's/^clang-format==\([0-9.]*\).*/\1/p' requirements-dev.txt 2>/dev/null || true)
mapfile -t files < <(find csrc -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' \) | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "lint_csrc: no source files under csrc/" >&2
  exit 1
fi
if ! "$CLANG_FORMAT" --dry-run --Werror --style=file "${files[@]}"; then
  echo "lint_csrc: csrc/ is not formatted as .clang-format asks (clang-format $version); \`make format\` fixes it" >&2
  if [ -n "$pinned" ] && [ "$version" != "$pinned" ]; then
    echo "lint_csrc: note: requirements-dev.txt pins clang-format $pinned, this is $version" >&2
  fi
  exit 1
fi
echo "lint_csrc: ${#files[@]} files formatted as .clang-format asks (clang-format $version)"
