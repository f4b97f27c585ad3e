"""Research and benchmark commands: training and distilling the readouts, evaluation, crop evaluation,
model, decode and pipeline benchmarks, the load test. They import the library; the library never imports
them (`.importlinter`)."""
