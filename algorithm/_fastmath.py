"""The fastmath flags of every numba kernel: LLVM's fast-math without nnan/ninf, so NaN and inf still
propagate and a diverging model is caught (stumpy's choice)."""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
