#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another, each for a set
# time, starting from the committed corpora and the saved crash inputs.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; no TARGET means every target. Exits
# non-zero when a target crashes, naming the saved input.
#
# New inputs a run finds go to fuzz/target/corpus/<target> (kept between
# local runs, never committed). With FUZZ_MERGE=1, each target that did not
# crash then has them folded into its committed corpus, fuzz/corpus/<target>,
# which is minimized in place with `cargo fuzz cmin` to the smallest set of
# inputs that still covers every edge (docs/testing.md, "Fuzzing").
set -euo pipefail

cd "$(dirname "$0")/.."

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((10#$secs < 1)); then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz builds with -Zsanitizer and other -Z flags; the pinned stable
# toolchain takes them only with this switch (no nightly can be fetched here).
export RUSTC_BOOTSTRAP=1
# Others build on the same machine: one job unless told otherwise.
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
if ((${#targets[@]} == 0)); then
    echo "fuzz.sh: no fuzz targets found" >&2
    exit 2
fi

logs=fuzz/target/logs
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    if [[ ! -f fuzz/fuzz_targets/$t.rs ]]; then
        echo "fuzz.sh: no target $t (have: $(cargo fuzz list --fuzz-dir fuzz | tr '\n' ' '))" >&2
        exit 2
    fi
    scratch=fuzz/target/corpus/$t
    mkdir -p "$scratch" "fuzz/corpus/$t"
    # Crash inputs of fixed bugs are run at start-up, so a regression shows at once.
    inputs=("$scratch" "fuzz/corpus/$t")
    if [[ -d fuzz/regressions/$t ]]; then
        inputs+=("fuzz/regressions/$t")
    fi
    extra=()
    if [[ -f fuzz/dict/$t.dict ]]; then
        extra+=("-dict=fuzz/dict/$t.dict")
    fi
    case $t in
    # A few hundred runs a second (a file tree per run): libFuzzer's slow
    # growth of the input length would keep most of the tree's files empty.
    hw_sysfs) extra+=(-len_control=0 -max_len=4096) ;;
    esac
    log=$logs/$t.log
    echo "== $t: ${secs}s"
    # One fuzzing process (no -jobs/-workers); -timeout turns a hang into a crash.
    set +e
    cargo fuzz run --fuzz-dir fuzz "$t" "${inputs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    status=$?
    set -e
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done |==[0-9]+==|thread .* panicked|SUMMARY|Test unit written)' "$log" || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    summary+=("$t: ${execs:-?} executions in ${secs}s, exit $status")
    if ((status != 0)); then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
        if [[ -z $artifact ]] && ! grep -q 'INITED' "$log"; then
            artifact="none: the target did not build or start"
        fi
        echo "fuzz.sh: $t FAILED (exit $status); input: ${artifact:-none saved}; log: $log" >&2
        failed+=("$t")
    elif [[ ${FUZZ_MERGE:-0} == 1 ]]; then
        find "$scratch" -maxdepth 1 -type f -exec cp -n -t "fuzz/corpus/$t" {} +
        # Edges only (no hit counts or comparison operands): a much smaller
        # committed corpus that reaches the same code.
        cargo fuzz cmin --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
            -set_cover_merge=1 -use_counters=0 -use_cmp=0 >"$logs/$t.cmin.log" 2>&1
        echo "$t: corpus now $(find "fuzz/corpus/$t" -type f | wc -l) files"
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "fuzz.sh: crashed: ${failed[*]}" >&2
    exit 1
fi
