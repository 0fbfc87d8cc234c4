"""virt-qga benchmarks: each module compares virt-qga with the obvious alternative in one run."""
