"""`python -m pgolf ...` and `torchrun ... -m pgolf train ...` enter here."""

from pgolf.cli import main

if __name__ == "__main__":
    main()
