"""Benchmark for mlmpipe (SPEC §9): start-up and fan-out cost.

A placeholder: the benchmark itself lands with issue 4.
"""
import sys


def main():
    print("bench: no benchmark yet; start-up and fan-out measurements land with issue 4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
