/* ws/utf8.h — incremental UTF-8 validation (RFC 3629) for WebSocket text.
 *
 * Rules
 *  - No I/O, no allocation, no Python.  The whole validator state is one
 *    uint32_t the caller keeps (0 = FC_UTF8_ACCEPT before the first byte).
 *  - Incremental: validating a text in any number of pieces gives the same
 *    verdict as validating it whole, and a sequence that can never become
 *    valid is rejected at its first bad byte (RFC 6455 section 8.1 lets a
 *    receiver fail as soon as it knows: Autobahn's 6.4.* check for that).
 *  - Accepts exactly what Python's strict "utf-8" codec accepts: shortest
 *    forms only, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 *
 * Theory of operation
 *  A byte is first mapped to one of 12 classes (fc_utf8_class); a
 *  (state, class) table gives the next state.  States say how many
 *  continuation bytes are still due and, right after a lead byte whose
 *  second byte has a narrower range (E0, ED, F0, F4), which range.  REJECT
 *  is absorbing.  While the state is ACCEPT the validator skips 32 or 8 bytes at a
 *  time as long as none has its high bit set (ASCII fast path).
 */
#ifndef FC_WS_UTF8_H
#define FC_WS_UTF8_H
#include <stddef.h>
#include <stdint.h>

#define FC_UTF8_ACCEPT 0u
#define FC_UTF8_REJECT 1u

/* Validate `len` bytes, continuing from *state.  Returns the new state
 * (also stored in *state): FC_UTF8_ACCEPT at a character boundary,
 * FC_UTF8_REJECT when the text is invalid (sticky), anything else in the
 * middle of a character.  When REJECT is returned, *bad_at (if not NULL) is
 * set to the index in `s` of the byte that was rejected. */
uint32_t fc_utf8_validate(uint32_t *state, const uint8_t *s, size_t len, size_t *bad_at);

/* One-shot: 1 if s[0..len) is complete valid UTF-8, else 0. */
int fc_utf8_valid(const uint8_t *s, size_t len);

#endif
