// Byte-class tests over sixteen bytes at a time, for the checks every HTTP head goes through
// (ByteClass.admits(all:) in the ClickID module): Swift's SIMD types compile such a test to a
// loop over the lanes, where SSE2 tests a block in a handful of instructions. Other CPUs get a
// byte loop with the same answers.
#ifndef CLICKGATE_BYTE_SCAN_H
#define CLICKGATE_BYTE_SCAN_H

#include <stddef.h>
#include <stdint.h>

/// Whether all `count` bytes (at least 16) are space or visible ASCII (0x20...0x7E).
int clickgate_all_space_or_visible(const uint8_t *bytes, size_t count);

/// Whether all `count` bytes (at least 16) are ASCII letters (lower case only unless
/// `upper_case`), digits or '-'.
int clickgate_all_letters_digits_hyphens(const uint8_t *bytes, size_t count, int upper_case);

/// Whether all `count` bytes (at least 16) are RFC 6265 cookie-octets: visible ASCII but
/// '"', ',', ';' and '\\'.
int clickgate_all_cookie_octets(const uint8_t *bytes, size_t count);

#endif
