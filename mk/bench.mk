# The whole model path measured in one run on this machine (loadtest/bench.py, docs/loadtest.md):
# encode efficiency per precision, TorchServe and /recommend over the bare forward, batching on/off,
# cold starts and peak RSS. Prints tables and writes loadtest/reports/bench.json; never a test.

BENCH_ARGS ?=

.PHONY: bench

bench: install ## Benchmark the model path (efficiency, /recommend ÷ forward, batching, RSS, cold start); prints a table, writes JSON
	$(PY) loadtest/bench.py $(BENCH_ARGS)
