"""The application: ``python -m fastroute`` (``analyze``, ``bench``, ``info``),
its report and its embedded corpus. The library never imports it."""
