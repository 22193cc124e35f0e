"""Compressed vectors moved to ``gguf_embed.store.codes``; this name keeps old imports working."""

from ..store.codes import CALIBRATION_SET, CalibrationStore, Quantizer, calibration_seqs, embed_codes, \
    model_quantizer, quantizer_from_rows, ranges_dir

__all__ = ["ranges_dir", "calibration_seqs", "CalibrationStore", "Quantizer", "quantizer_from_rows",
           "model_quantizer", "embed_codes", "CALIBRATION_SET"]
