"""The HTTP API (FastAPI) over the core's :class:`lsr.Engine`, and `lsr serve`; installed as ``lsr.service``."""
