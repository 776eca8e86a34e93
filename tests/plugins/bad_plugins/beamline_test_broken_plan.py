"""A plan module that fails on import: the session must report it and go on."""
raise RuntimeError("this plan module is broken on purpose")
