#!/usr/bin/env bash
# Fails when a file under src/ is longer than 500 lines without saying why in its first
# three lines (`// Long file: <reason>`). Split at roughly 400 lines, tests first (STYLE 12).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=500
status=0
while IFS= read -r file; do
  lines=$(wc -l <"$file")
  if [ "$lines" -gt "$limit" ] && ! head -n 3 "$file" | grep -q '^// Long file: '; then
    echo "$file: $lines lines and no '// Long file: <reason>' line at its top"
    status=1
  fi
done < <(find src -name '*.rs' | sort)
[ "$status" -eq 0 ] && echo "every file under src/ is within $limit lines or says why not"
exit "$status"
