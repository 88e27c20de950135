"""The few fields of ONNX's messages through which the cascade edits a voice's graph.

``onnx_classes`` declares them as protobuf messages of their own (the field
numbers are ONNX's), so a model parses, is edited and is written back without
the ``onnx`` package: the fields not declared here are kept as unknown fields
and written back unchanged.
"""

from __future__ import annotations

from functools import cache
from typing import Any

ONNX_FLOAT, ONNX_INT64 = 1, 7


@cache
def onnx_classes() -> dict[str, Any]:
    """Protobuf classes for ONNX's messages, declaring only the fields edited here."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    one, many = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    i32, i64, f32 = field.TYPE_INT32, field.TYPE_INT64, field.TYPE_FLOAT
    text, raw, sub = field.TYPE_STRING, field.TYPE_BYTES, field.TYPE_MESSAGE
    messages = {
        "TensorProto": [
            ("dims", 1, i64, many, ""),
            ("data_type", 2, i32, one, ""),
            ("float_data", 4, f32, many, ""),
            ("int64_data", 7, i64, many, ""),
            ("name", 8, text, one, ""),
            ("raw_data", 9, raw, one, ""),
        ],
        "AttributeProto": [
            ("name", 1, text, one, ""),
            ("i", 3, i64, one, ""),
            ("t", 5, sub, one, "TensorProto"),
            ("type", 20, i32, one, ""),
        ],
        "NodeProto": [
            ("input", 1, text, many, ""),
            ("output", 2, text, many, ""),
            ("name", 3, text, one, ""),
            ("op_type", 4, text, one, ""),
            ("attribute", 5, sub, many, "AttributeProto"),
        ],
        "Dimension": [("dim_value", 1, i64, one, "")],
        "TensorShapeProto": [("dim", 1, sub, many, "Dimension")],
        "TensorType": [("elem_type", 1, i32, one, ""), ("shape", 2, sub, one, "TensorShapeProto")],
        "TypeProto": [("tensor_type", 1, sub, one, "TensorType")],
        "ValueInfoProto": [("name", 1, text, one, ""), ("type", 2, sub, one, "TypeProto")],
        "GraphProto": [
            ("node", 1, sub, many, "NodeProto"),
            ("initializer", 5, sub, many, "TensorProto"),
            ("input", 11, sub, many, "ValueInfoProto"),
            ("output", 12, sub, many, "ValueInfoProto"),
        ],
        "OperatorSetIdProto": [("domain", 1, text, one, ""), ("version", 2, i64, one, "")],
        "ModelProto": [
            ("ir_version", 1, i64, one, ""),
            ("graph", 7, sub, one, "GraphProto"),
            ("opset_import", 8, sub, many, "OperatorSetIdProto"),
        ],
    }
    file = descriptor_pb2.FileDescriptorProto(
        name="omnivox_onnx_subset.proto", package="omnivox_onnx", syntax="proto2"
    )
    for message_name, fields in messages.items():
        message = file.message_type.add(name=message_name)
        for name, number, kind, label, type_name in fields:
            added = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = ".omnivox_onnx." + type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"omnivox_onnx.{name}"))
        for name in messages
    }
