// The system zlib, with its init macros as functions Swift can call.
#include <zlib.h>

/// An inflate stream that reads the gzip format (window bits 15, plus 16 for the gzip wrapper).
static inline int clickgate_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 16 + MAX_WBITS);
}

/// A deflate stream that writes the gzip format at `level`, with zlib's default memory use.
static inline int clickgate_deflate_init_gzip(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
}
