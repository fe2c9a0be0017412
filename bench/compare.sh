#!/usr/bin/env bash
# compare.sh runs BenchmarkEndToEnd (caddymodule/bench_test.go) several
# times and prints, as medians of the runs, how the gateway compares with
# bare reverse_proxy measured side by side in the same run: the median
# latency it adds at 1 client and its throughput at 16 clients as a ratio
# of bare's, for the tool table with an argument rule and the table alone,
# each with the decision cache and without.
#
# By default every call names a repository of its own, which the argument
# rule reads, so that every call with the rule is evaluated, cached or not
# (the table alone reads no argument: with the cache it recalls). Pass
# -mcpgate.recall to make every call name the same repository.
#
#   bench/compare.sh                 # 3 runs
#   RUNS=5 bench/compare.sh
#   bench/compare.sh -mcpgate.recall
#   KEEP=out/ bench/compare.sh       # keep each run's output in out/
set -euo pipefail

cd "$(dirname "$0")/.."
runs=${RUNS:-3}
keep=${KEEP:-$(mktemp -d)}
mkdir -p "$keep"

binary="$keep/caddymodule.test"
go test -c -o "$binary" ./caddymodule/

echo "$(date -u +%Y-%m-%d) $(go version | cut -d' ' -f3) caddy $(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)" \
	"$(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for run in $(seq "$runs"); do
	echo "run $run of $runs..." >&2
	(cd caddymodule && "$binary" -test.run='^$' -test.bench='^BenchmarkEndToEnd$' -test.benchtime=1x "$@") >"$keep/run$run.txt"
done

# Each run's metrics line holds "value name" pairs; the table takes, for
# each metric, the median over the runs.
cat "$keep"/run*.txt | awk '
/^BenchmarkEndToEnd-/ {
	runs++
	for (i = 5; i < NF; i += 2) values[$(i + 1)] = values[$(i + 1)] " " $i
}
function median(list,    n, v, i, j, t) {
	n = split(list, v, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function row(site, label) {
	if (values[site "-µs/median"] == "") return
	printf "%-30s %10.0f %10.0f %10.2f %12.0f %10.2f   %s\n", label,
		median(values[site "-µs/median"]), median(values[site "-added-µs"]),
		median(values[site "-µs/median"]) / median(values["bare-µs/median"]),
		median(values[site "-calls/s"]), median(values[site "-throughput-ratio"]),
		values[site "-added-µs"] " /" values[site "-throughput-ratio"]
}
END {
	if (runs == 0) { print "no benchmark results" > "/dev/stderr"; exit 1 }
	printf "medians of %d runs, each side by side with bare reverse_proxy\n\n", runs
	printf "%-30s %10s %10s %10s %12s %10s   %s\n", "", "1 client", "added", "latency", "16 clients", "throughput", "per run:"
	printf "%-30s %10s %10s %10s %12s %10s   %s\n", "", "µs", "µs", "ratio", "calls/s", "ratio", "added µs / throughput ratio"
	printf "%-30s %10.0f %10s %10s %12.0f %10s   %s\n", "bare reverse_proxy", median(values["bare-µs/median"]), "", "1.00",
		median(values["bare-calls/s"]), "1.00", values["bare-µs/median"]
	row("rule", "table + rule, cache on")
	row("rule-uncached", "table + rule, cache off")
	row("table", "table alone, cache on")
	row("table-uncached", "table alone, cache off")
	row("allow-uncached", "allows everything, cache off")

	printf "\nprocessor time of a call at 16 clients, µs (medians): in Caddy'"'"'s process (its clients included), in the upstream'"'"'s\n\n"
	printf "%-30s %10s %10s %10s %10s %10s\n", "", "Caddy", "upstream", "total", "added", "ratio"
	cpurow("bare", "bare reverse_proxy")
	cpurow("rule", "table + rule, cache on")
	cpurow("rule-uncached", "table + rule, cache off")
	cpurow("table", "table alone, cache on")
	cpurow("table-uncached", "table alone, cache off")
	cpurow("allow-uncached", "allows everything, cache off")
}
function cpurow(site, label,    own, upstream, bareTotal) {
	if (values[site "-cpu-µs/call"] == "") return
	own = median(values[site "-cpu-µs/call"])
	upstream = median(values[site "-upstream-cpu-µs/call"])
	bareTotal = median(values["bare-cpu-µs/call"]) + median(values["bare-upstream-cpu-µs/call"])
	printf "%-30s %10.0f %10.0f %10.0f %10.0f %10.2f\n", label, own, upstream, own + upstream,
		own + upstream - bareTotal, (own + upstream) / bareTotal
}'
echo
echo "runs kept in $keep"
