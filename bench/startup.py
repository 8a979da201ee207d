"""Start-up figures of issue 2 (``import fastreg`` < 0.3 s, first ``dropout`` < 1 s, warm cache).

Run: ``python bench/startup.py [RUNS]`` (the same as ``python -m fastreg bench --startup``).
"""

import sys

from fastreg._bench.startup import main

if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
