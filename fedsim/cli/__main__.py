"""``python -m fedsim.cli``: the same as the ``fedsim`` command."""

from fedsim.cli.app import main

if __name__ == "__main__":  # importing the module (a package walk) runs nothing
    main()
