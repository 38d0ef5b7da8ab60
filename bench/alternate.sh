#!/bin/bash
# Base against new, alternately, on one machine: bench/alternate.sh BASE_DIR NEW_DIR OUT_DIR [RATE...]
# BASE_DIR and NEW_DIR are two checkouts (each with its node_modules), for example a `git worktree` of
# the base commit beside the working tree. For each rate (default: max 10000) it runs base, new, base,
# new, each on a new --data (a new database), with
#   chatterbox bench --clients 1000 --window 8 --duration 10 --warmup 3 --rate RATE --json
# writing OUT_DIR/SIDE-RATE-ROUND.json, and the load average at each start in OUT_DIR/log. Set
# BENCH_LOCK to a file to take a lock around each run, so that benches run by others never overlap.
set -u
BASE=$1; NEW=$2; OUT=$3; shift 3
RATES=${*:-max 10000}
LOCK=${BENCH_LOCK:-/dev/null}
mkdir -p "$OUT"
for rate in $RATES; do for round in 1 2; do for side in base new; do
  dir=$BASE; [ "$side" = new ] && dir=$NEW
  data=$(mktemp -d); chmod 755 "$data"
  (
    [ "$LOCK" != /dev/null ] && flock 9
    echo "$(date +%T) $side rate=$rate round=$round load: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
    cd "$dir" && env -u DATABASE_URL timeout 300 ./node_modules/.bin/bun cli.ts bench --clients 1000 --window 8 --duration 10 --warmup 3 --rate "$rate" --json --data "$data/d" > "$OUT/$side-$rate-$round.json" 2> "$OUT/$side-$rate-$round.err"
  ) 9>>"$LOCK"
  rm -rf "$data"
done; done; done
echo done >> "$OUT/log"
