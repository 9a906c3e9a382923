#!/usr/bin/env bash
# Builds one fuzz target and runs AFL++ on it for a bounded time; fails if AFL saved a crash.
#
#   fuzz/run.sh TARGET SECONDS        TARGET: bearer jws canonical jsonrpc config
#   FUZZ_RESUME=1 fuzz/run.sh ...     continue the previous run in fuzz/out/TARGET
#
# Needs cargo-afl (cargo install cargo-afl --version 0.18.2 --locked; cargo afl config
# --build). See docs/security.md, "Fuzzing".
set -euo pipefail

targets="bearer jws canonical jsonrpc config"
if [ $# -ne 2 ] || ! [[ " $targets " == *" $1 "* ]] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 TARGET SECONDS   (TARGET: $targets)" >&2
  exit 2
fi
target=$1
seconds=$2
cd "$(dirname "$0")"

# Unattended and without root: no CPU-governor check, no core_pattern change (crashes are
# still recorded, AFL only loses a little time per crash), no screen UI, and no pinning to a
# core that other processes on a shared machine may be using.
export AFL_SKIP_CPUFREQ=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1
export AFL_NO_AFFINITY=1
# A persistent-mode target that forks nothing: no need for the fork-server timeout dance.
export AFL_FORKSRV_INIT_TMOUT=60000

cargo afl build --release --locked --bin "$target" 1>&2

# Every seed must pass its check: AFL would skip a crashing seed with only a warning.
for seed in "seeds/$target"/*; do
  if ! "target/release/$target" <"$seed" >/dev/null 2>&1; then
    echo "$target: the seed $seed fails its check; replay: fuzz/target/release/$target < fuzz/$seed" >&2
    exit 1
  fi
done

out="out/$target"
if [ "${FUZZ_RESUME:-0}" = 1 ] && [ -d "$out/default" ]; then
  input=-
else
  rm -rf "$out"
  input="seeds/$target"
fi
mkdir -p "$out"
# -V: stop after SECONDS; -t: 1 s per input is generous, a slower input counts as a hang.
# AFL's progress goes to a log beside the results; its tail is shown when it fails.
log="out/$target.log"
if ! cargo afl fuzz -V "$seconds" -t 1000 -i "$input" -o "$out" "target/release/$target" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  exit 1
fi

stats="$out/default/fuzzer_stats"
stat() { sed -n "s/^$1 *: *//p" "$stats"; }
crashes=$(stat saved_crashes)
echo "$target: execs_done=$(stat execs_done) execs_per_sec=$(stat execs_per_sec)" \
  "corpus_count=$(stat corpus_count) edges_found=$(stat edges_found)/$(stat total_edges)" \
  "bitmap_cvg=$(stat bitmap_cvg) saved_crashes=$crashes saved_hangs=$(stat saved_hangs)"
if [ "${crashes:-0}" != 0 ]; then
  echo "$target: AFL saved $crashes crashing input(s) in fuzz/$out/default/crashes/" >&2
  exit 1
fi
