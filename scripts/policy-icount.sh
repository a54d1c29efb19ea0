#!/usr/bin/env bash
# Instructions per uncached policy decision, counted by valgrind (callgrind),
# for the cells of BenchmarkDecideLibrary (policy/bench_test.go): the library
# of examples/policies deciding an HMI's read and an engineer's write, and the
# floor, a policy whose decision is a constant.
#
# A count of instructions does not depend on what else the machine is doing,
# where a time does: on the shared machines here the same decision's p50
# moves by 1.7x from one second to the next. Use it to compare two versions
# of a policy (or of the engine): run it on each and compare the counts.
#
#   scripts/policy-icount.sh                   every cell
#   scripts/policy-icount.sh staged/write floor/write
#
# Each cell runs the benchmark twice under callgrind (N1 and N2 decisions,
# 300 and 1800 unless set in the environment) and reports
# (count(N2) - count(N1)) / (N2 - N1), so the set-up (compiling the
# policies) cancels out. The garbage collector is off (GOGC=off), and so are
# the runtime's preemption signals, which callgrind cannot follow. Counts of
# the same code then repeat to within about 1%: the runtime's own timed work
# (sysmon) still runs by the clock. About 40 s per cell; two cells run at once.
set -euo pipefail

cd "$(dirname "$0")/.."
N1=${N1:-300}
N2=${N2:-1800}

if ! command -v valgrind >/dev/null; then
	echo "policy-icount: installing valgrind" >&2
	if [ "$(id -u)" -eq 0 ]; then
		apt-get install -y --no-install-recommends valgrind >/dev/null
	else
		sudo apt-get install -y --no-install-recommends valgrind >/dev/null
	fi
fi

cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
	for f in examples/policies/*/decision.rego; do
		p=$(basename "$(dirname "$f")")
		cells+=("$p/read" "$p/write")
	done
	cells+=(floor/read floor/write)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "policy-icount: building the policy package's test binary" >&2
CGO_ENABLED=0 go test -c -o "$work/policy.test" ./policy/

count() { # cell n → instructions of the whole run; fails when no such cell ran
	local out
	out=$(cd policy && GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 GOGC=off \
		valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		"$work/policy.test" -test.run '^$' -test.bench "^BenchmarkDecideLibrary\$/^${1//\//\$/^}\$" \
		-test.benchtime "${2}x" 2>&1)
	if ! grep -q "^BenchmarkDecideLibrary/$1 " <<<"$out"; then
		echo "policy-icount: no cell $1 (POLICY/read or POLICY/write, POLICY a directory of examples/policies or floor)" >&2
		return 1
	fi
	sed -n 's/.*Collected : //p' <<<"$out"
}

one() { # cell → "cell instructions-per-decision"
	local a b
	a=$(count "$1" "$N1") || return 1
	b=$(count "$1" "$N2") || return 1
	if [ -z "$a" ] || [ -z "$b" ]; then
		echo "policy-icount: callgrind gave no count for $1" >&2
		return 1
	fi
	echo "$1 $(((b - a) / (N2 - N1)))"
}
export -f count one
export work N1 N2

echo "policy-icount: ${#cells[@]} cells, $N1 and $N2 decisions each" >&2
# "index cell" per line: the index names the cell's output file, so a cell
# asked for twice is counted twice.
for i in "${!cells[@]}"; do echo "$i ${cells[$i]}"; done |
	xargs -P 2 -L 1 bash -c 'one "$2" > "$work/$1.out"' _

# The ratio column needs floor/write among the cells (it is in the default set).
floor=""
for i in "${!cells[@]}"; do
	[ "${cells[$i]}" = floor/write ] && floor=$(cut -d' ' -f2 "$work/$i.out")
done
echo "| policy/input | instructions per decision | × floor (constant decision, write) |"
echo "| --- | ---: | ---: |"
for i in "${!cells[@]}"; do
	read -r name n <"$work/$i.out"
	ratio="—"
	[ -n "$floor" ] && ratio=$(awk -v n="$n" -v f="$floor" 'BEGIN { printf "%.1f", n / f }')
	printf '| %s | %d | %s |\n' "$name" "$n" "$ratio"
done
