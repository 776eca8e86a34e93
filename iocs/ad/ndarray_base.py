"""The PVs every areaDetector port has (ADCore's NDArrayBase and NDPluginBase).

Tables only: which parameters exist, their record types, menus and defaults.
Behaviour lives in :mod:`.cam`, :mod:`.hdf5_plugin` and :mod:`.image_plugin`.
"""
from __future__ import annotations

from .params import DISABLE_ENABLE, NO_YES, Param, enum, pv, ro, rw

DATA_TYPES = ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
              "Float32", "Float64")
COLOR_MODES = ("Mono", "Bayer", "RGB1", "RGB2", "RGB3", "YUV444", "YUV422", "YUV421")
BAYER_PATTERNS = ("RGGB", "GBRG", "GRBG", "BGGR")
ATTRIBUTE_STATUS = ("Attributes file OK", "File not found", "XML syntax error",
                    "Macro substitution error")
ADCORE_VERSION = "3.10.0"


def ndarray_base(port: str, driver_version: str = ADCORE_VERSION) -> list[Param]:
    """NDArrayBase: identity, array description, counters and memory pool."""
    return [
        ro("PortName_RBV", "str", port),
        ro("ADCoreVersion_RBV", "str", ADCORE_VERSION),
        ro("DriverVersion_RBV", "str", driver_version),
        ro("Manufacturer_RBV", "str", "Simulated detector"),
        ro("Model_RBV", "str", "Basic simulator"),
        ro("SerialNumber_RBV", "str", "No serial number"),
        ro("SDKVersion_RBV", "str", ADCORE_VERSION),
        ro("FirmwareVersion_RBV", "str", "No firmware"),
        enum("ArrayCallbacks", DISABLE_ENABLE, 1),
        rw("ArrayCounter", "int", 0),
        ro("ArrayRate_RBV", "float", 0.0),
        ro("ArraySizeX_RBV", "int", 0),
        ro("ArraySizeY_RBV", "int", 0),
        ro("ArraySizeZ_RBV", "int", 0),
        ro("ArraySize_RBV", "int", 0),
        rw("NDimensions", "int", 0),
        rw("Dimensions", "ints", [0] * 10, max_length=10),
        enum("DataType", DATA_TYPES, 1),
        enum("ColorMode", COLOR_MODES, 0),
        ro("BayerPattern_RBV", "enum", BAYER_PATTERNS[0], enum=BAYER_PATTERNS),
        ro("UniqueId_RBV", "int", 0),
        ro("TimeStamp_RBV", "float", 0.0),
        ro("EpicsTSSec_RBV", "int", 0),
        ro("EpicsTSNsec_RBV", "int", 0),
        ro("DataType_RBV.DISA", "int", 0),
        pv("AsynIO", "int", 0),
        pv("NDAttributesFile", "char", ""),
        pv("NDAttributesMacros", "char", ""),
        enum("NDAttributesStatus", ATTRIBUTE_STATUS, 0, pair=False),
        pv("EmptyFreeList", "enum", "Done", enum=("Done", "Empty")),
        pv("NumQueuedArrays", "int", 0),
        ro("PoolMaxBuffers", "int", 0),
        ro("PoolAllocBuffers", "int", 0),
        ro("PoolFreeBuffers", "int", 0),
        ro("PoolUsedBuffers", "int", 0),
        ro("PoolMaxMem", "float", 0.0),
        ro("PoolUsedMem", "float", 0.0),
    ]


def plugin_base(port: str, plugin_type: str, source_port: str, queue_size: int = 20) -> list[Param]:
    """NDPluginBase: input port, callbacks, queue and the incoming array's shape."""
    table = [p for p in ndarray_base(port)
             if p.name not in ("Manufacturer_RBV", "Model_RBV", "SerialNumber_RBV",
                               "SDKVersion_RBV", "FirmwareVersion_RBV")]
    table += [
        ro("PluginType_RBV", "str", plugin_type),
        rw("NDArrayPort", "str", source_port),
        rw("NDArrayAddress", "int", 0),
        enum("EnableCallbacks", DISABLE_ENABLE, 1),
        enum("BlockingCallbacks", NO_YES, 0),
        rw("MinCallbackTime", "float", 0.0),
        rw("MaxByteRate", "float", 0.0),
        rw("DroppedArrays", "int", 0),
        rw("DroppedOutputArrays", "int", 0),
        rw("DisorderedArrays", "int", 0),
        rw("QueueSize", "int", queue_size),
        pv("QueueFree", "int", queue_size),
        pv("QueueFreeLow", "int", queue_size // 4),
        pv("QueueUse", "int", 0),
        pv("QueueUseHIGH", "int", int(queue_size * 0.75)),
        pv("QueueUseHIHI", "int", queue_size),
        rw("NumThreads", "int", 1),
        ro("MaxThreads_RBV", "int", 1),
        enum("SortMode", ("Unsorted", "Sorted"), 0),
        rw("SortTime", "float", 0.1),
        rw("SortSize", "int", 10),
        pv("SortFree", "int", 10),
        pv("SortFreeLow", "int", 0),
        ro("ExecutionTime_RBV", "float", 0.0),
        pv("ProcessPlugin", "enum", "Done", enum=("Done", "Process")),
        rw("MaxArrayRate", "float", 0.0),
        pv("MaxArrayRate_COUT", "float", 0.0),
    ]
    for n in range(10):   # the incoming array's dimensions (ophyd declares setpoint pairs)
        table += [rw(f"ArraySize{n}", "int", 0), rw(f"Dim{n}SA", "ints", [0] * 10, max_length=10)]
    return table
