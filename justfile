# ratchet's recipes; each runs inside ./dev's virtual environment.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the whole test suite (Hypothesis profile from RATCHET_PROFILE: dev by default, ci in CI).
test *args:
    ./dev pytest {{args}}

# Lint, format check and strict typing of engine/ and shell/.
lint:
    ./dev ruff check .
    ./dev ruff format --check .
    ./dev mypy --strict engine shell

# The order-protocol state machine and every law at 10,000 examples each, and `ratchet run`
# killed 200 times against the exchange (long; not in CI).
soak *args:
    RATCHET_PROFILE=soak ./dev pytest tests/machines tests/laws {{args}}
    RATCHET_KILLS=200 ./dev pytest tests/integration/test_crash.py {{args}}

# Benchmarks (pytest-benchmark): step latency, simulate throughput on the SPY week, baseline ratio.
bench *args:
    ./dev pytest benchmarks --benchmark-only --benchmark-columns=min,median,mean,max,rounds -p no:randomly {{args}}

# The README's first command: the live loop on the paper exchange (the bundled sample).
demo:
    ./dev ratchet run --state-dir ratchet-state/demo

# The README's sweep: samples/grid.toml over the bundled sample; refreshes docs/sweep.png.
sweep-demo:
    ./dev ratchet sweep samples/synthetic.jsonl --grid samples/grid.toml --out sweep-out --top 5
    cp sweep-out/sweep.png docs/sweep.png

# Mutation testing of engine/ (mutmut; long, not in CI): every mutant against the tests that
# reach its function, under the fast `mutate` Hypothesis profile, niced; `just mutate` for all
# of engine/, or name mutants by glob: `just mutate "engine.phase.*"`. Survivors are listed in
# mutants/survivors.txt (`./dev mutmut show NAME` shows one); specs/mutation.md has the scores.
mutate *names:
    RATCHET_PROFILE=mutate nice -n 19 ./dev mutmut run --max-children {{num_cpus()}} {{names}}
    ./dev python tools/mutation_report.py

# The SPY week (1.9 million prints, 4:00-20:00 ET, the README's 188 longs) through simulate
# and through the exchange in lock-step with the adapter: the summaries must agree (about
# 25 minutes; not in CI). Needs ../shared/data (or RATCHET_DATA).
lockstep-week data=env_var_or_default("RATCHET_DATA", "../shared/data"):
    ./dev python tools/make_entries.py {{data}}/ticks/spy_trades_2013-10-07_2013-10-11.csv.gz /tmp/ratchet-spy-entries.jsonl
    ./dev python tools/compare_lockstep.py {{data}}/ticks/spy_trades_2013-10-07_2013-10-11.csv.gz --entries /tmp/ratchet-spy-entries.jsonl

# Regenerate the bundled synthetic sample (deterministic).
sample:
    ./dev python tools/make_sample.py samples/synthetic.jsonl

# Everything CI runs.
ci:
    bash .ci/run
