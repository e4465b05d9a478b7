#include "CByteScan.h"

#if defined(__SSE2__)
#include <emmintrin.h>

// 0xFF in each lane whose byte is in lo...hi (unsigned), 0 elsewhere.
static inline __m128i clickgate_in_range(__m128i bytes, uint8_t lo, uint8_t hi) {
    __m128i offset = _mm_sub_epi8(bytes, _mm_set1_epi8((char)lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(offset, _mm_set1_epi8((char)(hi - lo))), offset);
}

static inline __m128i clickgate_space_or_visible(__m128i block, int upper_case) {
    (void)upper_case;
    return clickgate_in_range(block, 0x20, 0x7E);
}

static inline __m128i clickgate_letters_digits_hyphens(__m128i block, int upper_case) {
    // Setting 0x20 maps upper-case letters onto lower-case ones and no other byte onto a letter.
    __m128i letters = clickgate_in_range(_mm_or_si128(block, _mm_set1_epi8(upper_case ? 0x20 : 0)), 'a', 'z');
    __m128i digits = clickgate_in_range(block, '0', '9');
    __m128i hyphens = _mm_cmpeq_epi8(block, _mm_set1_epi8('-'));
    return _mm_or_si128(_mm_or_si128(letters, digits), hyphens);
}

static inline __m128i clickgate_cookie_octets(__m128i block, int upper_case) {
    (void)upper_case;
    __m128i refused = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(block, _mm_set1_epi8('"')), _mm_cmpeq_epi8(block, _mm_set1_epi8(','))),
        _mm_or_si128(_mm_cmpeq_epi8(block, _mm_set1_epi8(';')), _mm_cmpeq_epi8(block, _mm_set1_epi8('\\'))));
    return _mm_andnot_si128(refused, clickgate_in_range(block, 0x21, 0x7E));
}

// Whether `accepts` passes every one of `count` bytes (at least 16), sixteen at a time. Inlined
// with each test, so the call through the pointer goes away.
static inline int clickgate_all_blocks(const uint8_t *bytes, size_t count, __m128i (*accepts)(__m128i, int), int upper_case) {
    size_t index = 0;
    for (;;) {
        // The last block ends with the last byte, overlapping bytes already tested.
        if (index + 16 > count) index = count - 16;
        __m128i block = _mm_loadu_si128((const __m128i *)(bytes + index));
        if (_mm_movemask_epi8(accepts(block, upper_case)) != 0xFFFF) return 0;
        if (index + 16 == count) return 1;
        index += 16;
    }
}
#endif

int clickgate_all_space_or_visible(const uint8_t *bytes, size_t count) {
#if defined(__SSE2__)
    return clickgate_all_blocks(bytes, count, clickgate_space_or_visible, 0);
#else
    for (size_t index = 0; index < count; index++) {
        if (bytes[index] < 0x20 || bytes[index] > 0x7E) return 0;
    }
    return 1;
#endif
}

int clickgate_all_letters_digits_hyphens(const uint8_t *bytes, size_t count, int upper_case) {
#if defined(__SSE2__)
    return clickgate_all_blocks(bytes, count, clickgate_letters_digits_hyphens, upper_case);
#else
    for (size_t index = 0; index < count; index++) {
        uint8_t byte = bytes[index];
        int letter = (byte >= 'a' && byte <= 'z') || (upper_case && byte >= 'A' && byte <= 'Z');
        if (!letter && !(byte >= '0' && byte <= '9') && byte != '-') return 0;
    }
    return 1;
#endif
}

int clickgate_all_cookie_octets(const uint8_t *bytes, size_t count) {
#if defined(__SSE2__)
    return clickgate_all_blocks(bytes, count, clickgate_cookie_octets, 0);
#else
    for (size_t index = 0; index < count; index++) {
        uint8_t byte = bytes[index];
        if (byte < 0x21 || byte > 0x7E || byte == '"' || byte == ',' || byte == ';' || byte == '\\') return 0;
    }
    return 1;
#endif
}
