"""A plugin that cannot be imported: the loader must report it and go on."""
raise ImportError("this plugin is broken on purpose")
