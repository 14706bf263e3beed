/* ws/utf8.c — incremental UTF-8 validator; see utf8.h for the rules. */
#include "ws/utf8.h"

#include <string.h>

/* Byte classes.  The ranges are the rows of RFC 3629 section 4 (UTF8-2,
 * UTF8-3, UTF8-4), split where a second byte's allowed range differs. */
enum {
    C_ASCII = 0,  /* 00..7F */
    C_CONT_LO,    /* 80..8F */
    C_CONT_MID,   /* 90..9F */
    C_CONT_HI,    /* A0..BF */
    C_BAD,        /* C0, C1, F5..FF: never valid */
    C_LEAD2,      /* C2..DF: one continuation */
    C_E0,         /* E0: next A0..BF (no overlong 3-byte forms) */
    C_LEAD3,      /* E1..EC, EE, EF: two continuations */
    C_ED,         /* ED: next 80..9F (no surrogates) */
    C_F0,         /* F0: next 90..BF (no overlong 4-byte forms) */
    C_LEAD4,      /* F1..F3: three continuations */
    C_F4,         /* F4: next 80..8F (nothing above U+10FFFF) */
    N_CLASSES
};

/* States.  ACCEPT and REJECT are the public values 0 and 1. */
enum {
    S_ACC = 0, S_REJ = 1,
    S_C1,      /* one continuation byte (any 80..BF) due */
    S_C2,      /* two due */
    S_C3,      /* three due */
    S_E0,      /* after E0: A0..BF, then one more */
    S_ED,      /* after ED: 80..9F, then one more */
    S_F0,      /* after F0: 90..BF, then two more */
    S_F4,      /* after F4: 80..8F, then two more */
    N_STATES
};

#define R S_REJ
/* next[state][class] */
static const uint8_t next_state[N_STATES][N_CLASSES] = {
    /*        ASCII  LO    MID   HI    BAD  LEAD2 E0    LEAD3 ED    F0    LEAD4 F4 */
    [S_ACC] = {S_ACC, R,    R,    R,    R,   S_C1, S_E0, S_C2, S_ED, S_F0, S_C3, S_F4},
    [S_REJ] = {R,     R,    R,    R,    R,   R,    R,    R,    R,    R,    R,    R},
    [S_C1]  = {R,     S_ACC,S_ACC,S_ACC,R,   R,    R,    R,    R,    R,    R,    R},
    [S_C2]  = {R,     S_C1, S_C1, S_C1, R,   R,    R,    R,    R,    R,    R,    R},
    [S_C3]  = {R,     S_C2, S_C2, S_C2, R,   R,    R,    R,    R,    R,    R,    R},
    [S_E0]  = {R,     R,    R,    S_C1, R,   R,    R,    R,    R,    R,    R,    R},
    [S_ED]  = {R,     S_C1, S_C1, R,    R,   R,    R,    R,    R,    R,    R,    R},
    [S_F0]  = {R,     R,    S_C2, S_C2, R,   R,    R,    R,    R,    R,    R,    R},
    [S_F4]  = {R,     S_C2, R,    R,    R,   R,    R,    R,    R,    R,    R,    R},
};
#undef R

/* The class of every byte: one load per byte on the slow path.  Ranges
 * (a GNU C extension; the build is -std=gnu11) keep it readable. */
static const uint8_t class_of[256] = {
    [0x00 ... 0x7F] = C_ASCII,
    [0x80 ... 0x8F] = C_CONT_LO,
    [0x90 ... 0x9F] = C_CONT_MID,
    [0xA0 ... 0xBF] = C_CONT_HI,
    [0xC0 ... 0xC1] = C_BAD,
    [0xC2 ... 0xDF] = C_LEAD2,
    [0xE0] = C_E0,
    [0xE1 ... 0xEC] = C_LEAD3,
    [0xED] = C_ED,
    [0xEE ... 0xEF] = C_LEAD3,
    [0xF0] = C_F0,
    [0xF1 ... 0xF3] = C_LEAD4,
    [0xF4] = C_F4,
    [0xF5 ... 0xFF] = C_BAD,
};

#define HIGH_BITS 0x8080808080808080ULL

uint32_t fc_utf8_validate(uint32_t *state, const uint8_t *s, size_t len, size_t *bad_at)
{
    uint32_t st = *state;
    size_t i = 0;
    if (st == S_REJ) {
        if (bad_at) *bad_at = 0;
        return st;
    }
    while (i < len) {
        if (st == S_ACC) {
            /* ASCII fast path: 32 bytes per step while no byte has its
             * high bit set (one test for four words), then 8 (memcpy: an
             * unaligned load without undefined behaviour; one mov each). */
            while (len - i >= 32) {
                uint64_t w[4];
                memcpy(w, s + i, 32);
                if ((w[0] | w[1] | w[2] | w[3]) & HIGH_BITS) break;
                i += 32;
            }
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & HIGH_BITS) break;
                i += 8;
            }
            while (i < len && s[i] < 0x80) i++;
            if (i == len) break;
        }
        st = next_state[st][class_of[s[i]]];
        if (st == S_REJ) {
            if (bad_at) *bad_at = i;
            *state = st;
            return st;
        }
        i++;
    }
    *state = st;
    return st;
}

int fc_utf8_valid(const uint8_t *s, size_t len)
{
    uint32_t st = FC_UTF8_ACCEPT;
    return fc_utf8_validate(&st, s, len, NULL) == FC_UTF8_ACCEPT;
}
