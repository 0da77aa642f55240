"""Serving: loading a model on a runtime, screening inputs (predict), CAM boxes (localize), journals, sinks."""
