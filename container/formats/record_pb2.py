"""Protobuf classes of SageMaker's ``record.proto`` (``package aialgs.data``, proto2), built at import.

The serialized file descriptor below is byte-identical to the one in ``sagemaker/amazon/record_pb2.py`` (what
``protoc`` emits for the SDK's ``record.proto``), so this module and the SDK's can share protobuf's default
descriptor pool in one process. The runtime never imports the SDK. The schema, for reference::

    message Float32Tensor { repeated float  values = 1 [packed=true]; repeated uint64 keys = 2 [packed=true];
                            repeated uint64 shape = 3 [packed=true]; }
    message Float64Tensor { repeated double values = 1 [packed=true]; ...same keys/shape... }
    message Int32Tensor   { repeated int32  values = 1 [packed=true]; ...same keys/shape... }
    message Bytes  { repeated bytes value = 1; optional string content_type = 2; }
    message Value  { oneof value { Float32Tensor float32_tensor = 2; Float64Tensor float64_tensor = 3;
                                   Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
    message Record { map<string, Value> features = 1; map<string, Value> label = 2;
                     optional string uid = 3; optional string metadata = 4; optional string configuration = 5; }
"""

from google.protobuf import descriptor_pool, message_factory

DESCRIPTOR = descriptor_pool.Default().AddSerializedFile(
    b'\n\x0crecord.proto\x12\x0baialgs.data"H\n\rFloat32Tensor\x12\x12\n\x06'
    b'values\x18\x01 \x03(\x02B\x02\x10\x01\x12\x10\n\x04keys\x18\x02 \x03(\x04B\x02\x10\x01\x12\x11\n\x05shape\x18\x03 \x03('
    b'\x04B\x02\x10\x01"H\n\rFloat64Tensor\x12\x12\n\x06values\x18\x01 \x03(\x01B\x02\x10\x01\x12\x10\n\x04ke'
    b'ys\x18\x02 \x03(\x04B\x02\x10\x01\x12\x11\n\x05shape\x18\x03 \x03(\x04B\x02\x10\x01"F\n\x0bInt32Tensor\x12\x12'
    b'\n\x06values\x18\x01 \x03(\x05B\x02\x10\x01\x12\x10\n\x04keys\x18\x02 \x03(\x04B\x02\x10\x01\x12\x11\n\x05shape\x18\x03 '
    b'\x03(\x04B\x02\x10\x01",\n\x05Bytes\x12\r\n\x05value\x18\x01 \x03(\x0c\x12\x14\n\x0ccontent_type\x18'
    b'\x02 \x01(\t"\xd3\x01\n\x05Value\x124\n\x0efloat32_tensor\x18\x02 \x01(\x0b2\x1a.aialgs'
    b'.data.Float32TensorH\x00\x124\n\x0efloat64_tensor\x18\x03 \x01(\x0b2\x1a.'
    b'aialgs.data.Float64TensorH\x00\x120\n\x0cint32_tensor\x18\x07 \x01('
    b'\x0b2\x18.aialgs.data.Int32TensorH\x00\x12#\n\x05bytes\x18\t \x01(\x0b2\x12.a'
    b'ialgs.data.BytesH\x00B\x07\n\x05value"\xa9\x02\n\x06Record\x123\n\x08featur'
    b'es\x18\x01 \x03(\x0b2!.aialgs.data.Record.FeaturesEntry\x12-\n\x05l'
    b'abel\x18\x02 \x03(\x0b2\x1e.aialgs.data.Record.LabelEntry\x12\x0b\n\x03ui'
    b'd\x18\x03 \x01(\t\x12\x10\n\x08metadata\x18\x04 \x01(\t\x12\x15\n\rconfiguration\x18\x05 \x01(\t'
    b'\x1aC\n\rFeaturesEntry\x12\x0b\n\x03key\x18\x01 \x01(\t\x12!\n\x05value\x18\x02 \x01(\x0b2\x12.'
    b'aialgs.data.Value:\x028\x01\x1a@\n\nLabelEntry\x12\x0b\n\x03key\x18\x01 \x01(\t'
    b'\x12!\n\x05value\x18\x02 \x01(\x0b2\x12.aialgs.data.Value:\x028\x01B0\n com.a'
    b'mazonaws.aialgorithms.protoB\x0cRecordProtos'
)

Float32Tensor = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Float32Tensor"])
Float64Tensor = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Float64Tensor"])
Int32Tensor = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Int32Tensor"])
Bytes = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Bytes"])
Value = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Value"])
Record = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Record"])
