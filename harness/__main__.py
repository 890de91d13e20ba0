"""`python -m harness ...`: what launchers run (`accelerate launch -m harness`, `torchrun -m harness`)."""

from harness.cli import main

main()
