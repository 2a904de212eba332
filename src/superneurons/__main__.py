"""`python -m superneurons ...`: the CLI, also as a module for launchers
(`torchrun --nproc_per_node 2 -m superneurons probe ...`, `accelerate launch -m superneurons ...`)."""

from superneurons.cli.app import main

if __name__ == "__main__":
    main()
