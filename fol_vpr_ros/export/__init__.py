"""Deployment export of FoL: fixed-shape graph, ONNX export, onnxruntime / TensorRT runners, engine builder."""

from .fixed_shape import OUTPUT_NAMES, FixedShapeFoL, local_cell_patches, max_local_rows, padded_local_rows
from .metadata import ExportMetadata
from .onnx_export import EXPORT_PRECISIONS, INPUT_NAME, OnnxExportResult, export_onnx

__all__ = [
    "EXPORT_PRECISIONS",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "ExportMetadata",
    "FixedShapeFoL",
    "OnnxExportResult",
    "export_onnx",
    "local_cell_patches",
    "max_local_rows",
    "padded_local_rows",
]
