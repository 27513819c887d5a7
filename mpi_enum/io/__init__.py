"""Files: the result layout, its collective writer and its only reader, and the checkpoint journal.

* :mod:`.results`: the HDF5 layout (CONTRACT §3), the per-rank :class:`~.results.RegionBuffer`
  and the collective writer;
* :mod:`.reader`: :func:`~.reader.load_result`, the one reader used by post-processing and the API;
* :mod:`.rows`: the engine-output-to-row conversion (:class:`~.rows.Recorder`);
* :mod:`.checkpoint`: the append-only journal and resume.

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.engine.work`, numpy, h5py.  The communicator
comes in as an argument; nothing here creates one.
"""
