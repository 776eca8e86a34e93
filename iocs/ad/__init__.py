"""The simulated ``ad:`` IOC: ADSimDetector ``cam1:`` with ``image1:`` and ``HDF1:`` plugins.

``ioc`` assembles and serves it; ``cam`` is the driver, ``simulation`` makes the
frames, ``plugin_base``/``image_plugin``/``hdf5_plugin`` are the plugins,
``hdf5_file`` writes the files, and ``params``/``ndarray_base``/``hdf5_params``
hold the PV tables.
"""
