"""qwendesk benchmarks: raw llama.cpp vs llama-cpp-python vs Xinference vs qwendesk (run with `bench/run`)."""
