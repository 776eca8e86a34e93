"""PV tables of a file-writing plugin (ADCore's NDFile) and of NDFileHDF5."""
from __future__ import annotations

from .ndarray_base import plugin_base
from .params import NO_YES, Param, enum, pv, ro, rw

FILE_WRITE_MODES = ("Single", "Capture", "Stream")
COMPRESSIONS = ("None", "N-bit", "szip", "zlib", "Blosc", "BSLZ4", "LZ4", "JPEG")
EXTRA_DIMS = ("3", "4", "5", "6", "7", "8", "9", "N", "X", "Y")


def file_params(data_dir: str) -> list[Param]:
    """NDFile: where and how files are written, capture control and status."""
    return [
        rw("FilePath", "char", data_dir),
        ro("FilePathExists_RBV", "enum", "No", enum=NO_YES),
        rw("CreateDirectory", "int", 0),
        rw("TempSuffix", "char", ""),
        rw("FileName", "char", "image"),
        rw("FileNumber", "int", 1),
        pv("FileNumber_Sync", "int", 0),
        pv("FileNumber_write", "int", 0),
        enum("AutoIncrement", NO_YES, 1),
        rw("FileTemplate", "char", "%s%s_%3.3d.h5"),
        ro("FullFileName_RBV", "char", ""),
        enum("AutoSave", NO_YES, 0),
        enum("WriteFile", ("Done", "Write"), 0),
        enum("ReadFile", ("Done", "Read"), 0),
        enum("FileFormat", ("HDF5",), 0),
        enum("FileWriteMode", FILE_WRITE_MODES, 0),
        enum("Capture", ("Done", "Capture"), 0),
        rw("NumCapture", "int", 1),
        ro("NumCaptured_RBV", "int", 0),
        enum("DeleteDriverFile", NO_YES, 0),
        enum("LazyOpen", NO_YES, 0),
        ro("WriteStatus", "enum", "Write OK", enum=("Write OK", "Write error")),
        ro("WriteMessage", "char", ""),
    ]


def hdf5_params() -> list[Param]:
    """NDFileHDF5: layout, chunking, compression, SWMR and extra-dimension records."""
    table = [
        enum("Compression", COMPRESSIONS, 0),
        rw("ZLevel", "int", 6),
        rw("SZipNumPixels", "int", 16),
        rw("NumDataBits", "int", 0),
        rw("DataBitsOffset", "int", 0),
        enum("BloscCompressor", ("BloscLZ", "LZ4", "LZ4HC", "SNAPPY", "ZLIB", "ZSTD"), 0),
        rw("BloscLevel", "int", 5),
        enum("BloscShuffle", ("None", "Byte", "Bit"), 0),
        rw("NumRowChunks", "int", 0),
        rw("NumColChunks", "int", 0),
        rw("NumFramesChunks", "int", 1),
        rw("NumFramesFlush", "int", 0),
        rw("NDAttributeChunk", "int", 0),
        rw("BoundaryAlign", "int", 0),
        rw("BoundaryThreshold", "int", 65536),
        rw("FillValue", "float", 0.0),
        rw("NumExtraDims", "int", 0),
        enum("DimAttDatasets", NO_YES, 0),
        enum("StoreAttr", NO_YES, 1),
        enum("StorePerform", NO_YES, 0),
        enum("PositionMode", ("Off", "On"), 0),
        rw("XMLFileName", "char", ""),
        ro("XMLValid_RBV", "enum", "Yes", enum=NO_YES),
        ro("XMLErrorMsg_RBV", "char", ""),
        enum("SWMRMode", ("Off", "On"), 0),
        ro("SWMRSupported_RBV", "enum", "Supported", enum=("Not Supported", "Supported")),
        ro("SWMRActive_RBV", "enum", "Off", enum=("Off", "Active")),
        ro("SWMRCbCounter_RBV", "int", 0),
        pv("IOSpeed", "float", 0.0),
        pv("RunTime", "float", 0.0),
    ]
    for dim in EXTRA_DIMS:
        table.append(ro(f"ExtraDimName{dim}_RBV", "str", dim))
        table.append(rw(f"ExtraDimSize{dim}", "int", 1))
        table.append(rw(f"PosNameDim{dim}", "str", ""))
        table.append(rw(f"PosIndexDim{dim}", "str", ""))
        if dim != "N":
            table.append(rw(f"ExtraDimChunk{dim}", "int", 1))
    return table


def hdf5_plugin_params(port: str, source_port: str, data_dir: str) -> list[Param]:
    """Everything ``HDF1:`` serves."""
    return (plugin_base(port, "NDFileHDF5", source_port)
            + file_params(data_dir) + hdf5_params())
