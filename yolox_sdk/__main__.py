"""``python -m yolox_sdk``: the CLI, also what ``torchrun -m yolox_sdk train ...`` starts in each process."""

from yolox_sdk.cli.main import main

if __name__ == "__main__":
    main()
