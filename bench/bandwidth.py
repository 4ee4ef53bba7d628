"""Memory bandwidth of this machine: a large tensor copy and a STREAM-triad style sum, in GB/s (1e9 bytes/s).

Copy: `dst.copy_(src)`, counting bytes read + written (2 arrays). Triad: `a = b + s * c` as one fused
`torch.add(b, c, alpha=s, out=a)`, counting 3 arrays (2 read, 1 written). Each figure is the median of the repeats.
This is the bound of batch-1 decoding: `bench/generate_throughput.py` measures it in the same run (`measure_bandwidth`).

    python bench/bandwidth.py
    python bench/bandwidth.py --megabytes 512 --repeats 15
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, measure_bandwidth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=256, help="size of each array, MB")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    bw = measure_bandwidth(args.megabytes, args.repeats)
    print(f"# Memory bandwidth, {machine()}")
    print(f"arrays of {args.megabytes} MB, median of {args.repeats} repeats\n")
    print("| kernel | bytes counted | GB/s |")
    print("| --- | --- | ---: |")
    print(f"| copy `dst.copy_(src)` | 2 x array (read + write) | {bw.copy_gbs:.1f} |")
    print(f"| triad `a = b + s*c` | 3 x array (2 reads + 1 write) | {bw.triad_gbs:.1f} |")


if __name__ == "__main__":
    main()
