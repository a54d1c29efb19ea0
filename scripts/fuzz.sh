#!/usr/bin/env bash
# Runs every fuzz target of the repository for FUZZTIME each (default 1m),
# one after another, and stops at the first failure: its input is then in
# the package's testdata/fuzz/<target>/ and `go test -run <target>/<file>
# ./<package>/` replays it. FUZZ=<regexp> runs only the targets it matches.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-1m}
scripts/install-peers.sh # gateway/opcua's FuzzEngine runs node-opcua

mapfile -t targets < <(grep -rH --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . |
	sed -E 's#^\./(.*)/[^/]*:func (Fuzz.*)$#\1 \2#' | sort -u | grep -E -- "${FUZZ:-.}" || true)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no target matches '${FUZZ:-.}'" >&2
	exit 1
fi
i=0
for t in "${targets[@]}"; do
	i=$((i + 1))
	read -r pkg name <<<"$t"
	echo "== fuzz $i/${#targets[@]}: $name in ./$pkg for $fuzztime"
	go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "./$pkg/" 2>&1 | grep -v '^fuzz: elapsed' || exit 1
done
echo "fuzz: all ${#targets[@]} targets ran $fuzztime each without a failure"
