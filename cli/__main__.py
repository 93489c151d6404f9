"""``python -m scim_bridge.cli``: the same as the ``scim-bridge`` console script."""

from scim_bridge.cli.main import main

main()
