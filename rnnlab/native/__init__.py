"""CPU kernels in C/C++, compiled on first use with the system compiler.

  build.py        compiler, instruction-set variants (avx512, avx2,
                  generic), the private cache of built libraries
  vecmath.h       vector width per variant; exp, sigmoid, tanh (IEEE-safe)
  recurrence.cc   a layer's training loops as XLA FFI custom calls
  recurrence.py   (implementation="native")
  generate.c      token-by-token generation
  sampler.py      (rnnlab.sampling's backend "native")
  autotune.py     what implementation="auto" runs: timed once per machine
                  and shape, cached next to the libraries
  __main__.py     python -m rnnlab.native [show|clear|build]

This package imports nothing itself: the kernels' modules sit below the
models (recurrence) or above them (sampler), and importing one must not
pull in the other.
"""
