# The C types of _picows_read.py when Cython compiles it (see that module's docstring).
from picows.picows cimport WSFrame, WSListener, WSMsgType, WSTransport

cdef WSMsgType _TEXT

cdef extern from *:
    # Defined by setup.py: what this extension was built from (_build_stamp.py).
    const char* CROSSWIRE_BUILT_FOR

cdef class FrameReader(WSListener):
    cdef public object _cork
    cdef public object _writes
    cdef public object _receive
    cdef public list _parts

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame)
