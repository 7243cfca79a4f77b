# The whole model path measured in one run on this machine (loadtest/bench.py, docs/loadtest.md):
# encode efficiency per precision, TorchServe and /recommend over the bare forward, batching on/off,
# cold starts and peak RSS. Prints tables and writes loadtest/reports/bench.json; never a test.

BENCH_ARGS ?=
# The interpreter to measure with. The venv's torch is the CUDA build, whose libraries and start-up
# allocations add ~350 MiB to the worker; the image installs the CPU build. To measure what the image
# runs, point this at a venv with the CPU build and the project installed, e.g.
#   pip install torch==2.14.1+cpu torchvision==0.29.1+cpu --index-url https://download.pytorch.org/whl/cpu
#   pip install -e '.[model-server,api,index,loadtest]'
BENCH_PY ?= $(PY)

.PHONY: bench

bench: install ## Benchmark the model path (efficiency, /recommend ÷ forward, batching, RSS, cold start); prints a table, writes JSON
	$(BENCH_PY) loadtest/bench.py $(BENCH_ARGS)
