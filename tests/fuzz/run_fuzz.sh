#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ in build-fuzz and runs each for N seconds
# (default 30) from its seed corpus in tests/fuzz_corpus/. Fails on any crash, leak, sanitizer
# report or violated property; the input that failed is left in build-fuzz/crashes/TARGET/.
#
#   tests/fuzz/run_fuzz.sh [SECONDS] [TARGET...]     TARGET: fuzz_csv_reader, fuzz_ini
#   FUZZ_BUILD_DIR=dir JOBS=2 tests/fuzz/run_fuzz.sh 300 fuzz_ini
#   FUZZ_SEED=N tests/fuzz/run_fuzz.sh      repeat a run's mutations (the seed is printed)
#   FUZZ_SEED=N FUZZ_RUNS=M tests/fuzz/run_fuzz.sh   M inputs per target instead of a time:
#                                           the same inputs every time (what ./dev test runs)
#
# A crash becomes a regression test: add the input to tests/fuzz_corpus/<kind>/ (the
# fuzz_replay_* ctests run it in every build) and a unit test that names the behaviour.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-30}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_csv_reader fuzz_ini)
build=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${JOBS:-2}

command -v clang++ >/dev/null || { echo "run_fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

corpus_of() {
  case $1 in
    fuzz_csv_reader) echo tests/fuzz_corpus/csv ;;
    fuzz_ini) echo tests/fuzz_corpus/ini ;;
    *) echo "run_fuzz: unknown target '$1' (fuzz_csv_reader, fuzz_ini)" >&2; exit 2 ;;
  esac
}
for t in "${targets[@]}"; do corpus_of "$t" >/dev/null; done

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMILLRACE_FUZZ=ON -DMILLRACE_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

seed=${FUZZ_SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}
if [[ -n ${FUZZ_RUNS:-} ]]; then
  limit=-runs=$FUZZ_RUNS budget="$FUZZ_RUNS inputs"
else
  limit=-max_total_time=$seconds budget="${seconds}s"
fi
rc=0
for t in "${targets[@]}"; do
  seeds=$(corpus_of "$t")
  # The fuzzer writes what it learns to a scratch corpus, never into the tree.
  work=$build/corpus/$t
  crashes=$build/crashes/$t
  # A counted run starts from the seed corpus alone, so it sees the same inputs every time.
  [[ -z ${FUZZ_RUNS:-} ]] || rm -rf "$work"
  mkdir -p "$work" "$crashes"
  echo "== $t: $budget from $seeds, seed $seed (FUZZ_SEED=$seed repeats it)"
  if ! "$build/bin/$t" -seed="$seed" "$limit" -timeout=10 -rss_limit_mb=2048 \
      -max_len=8192 -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "$seeds"; then
    echo "run_fuzz: $t failed; reproducer(s):" >&2
    ls -1 "$crashes" >&2 || true
    echo "replay: $build/bin/$t $crashes/<file>" >&2
    rc=1
  fi
done
exit $rc
