# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Plugin projects: each ``projects/<name>/`` adds units, decoders, metrics or transforms to
mmrefvlm through its registries, without editing ``mmrefvlm/`` (see ``docs/plugins.md``).

The core never imports this package (``tests/test_plugins/test_core_isolation.py``)."""
