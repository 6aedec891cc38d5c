"""The GPU check's old name: it moved into the package, rnnlab/gpu_check.py.

  python -m rnnlab.gpu_check            # what to type now
  python -m benchmarks.gpu_check        # the same, same flags
"""
from rnnlab.gpu_check import main

if __name__ == "__main__":
  main()
