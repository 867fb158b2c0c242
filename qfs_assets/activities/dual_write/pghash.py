"""PostgreSQL's extended hash functions, computed on the client (numba), bit for bit.

The ``buckets`` diff (:mod:`qfs_assets.activities.dual_write.diff`) lets PostgreSQL checksum the
system of record per bucket and checksums the manifest's same buckets here, so both sides must
compute the very same 64-bit values. PostgreSQL's hash opclass support functions of the types in
``qfs_objects`` all reduce to Bob Jenkins' lookup3 as PostgreSQL adapted it (``src/common/hashfn.c``,
``hash_bytes_extended`` and ``hash_bytes_uint32_extended``; the wrappers in
``src/backend/access/hash/hashfunc.c``), re-implemented here from that description:

* ``hashtextextended(text, seed)`` (deterministic collation, e.g. ``COLLATE "C"``): the text's
  bytes (UTF-8 in a UTF8 database) through ``hash_bytes_extended``;
* ``hashint8extended(int8, seed)``: the low 32 bits xor the high 32 bits (xor their complement
  when negative) through ``hash_bytes_uint32_extended``; ``hashint4extended`` and
  ``hashint2extended`` hash the sign-extended value the same way (so all three agree on equal
  values, as PostgreSQL's cross-type hashing requires);
* a non-zero seed is mixed into the state first (its high word into ``a``, its low word into
  ``b``); the 64-bit result is ``b << 32 | c``, returned by PostgreSQL as a signed ``bigint``.

Little-endian machines only (PostgreSQL's word-at-a-time path reads little-endian words, which
is what the byte-wise code below computes); ``qfs_assets_tests/test_pghash.py`` checks every
function against a real server on random and edge values.

The row hash of the diff (:func:`row_hash`, and the SQL in ``diff.py`` that must mirror it):

* ``base = hashtextextended(object_id, 0)``; the bucket is ``base & (buckets - 1)``;
* in flight (``updated_at >= end``): ``hashint8extended(1, base)`` (whatever its other fields:
  an object in flight is only counted);
* else a tombstone: ``hashint8extended(2, base)`` (a row deleted on both sides is consistent
  whatever its other fields);
* else ``hashint8extended(size_bytes, hashint8extended(version, hashint8extended(total_shards,
  hashint8extended(data_shards, hashtextextended(content_hash, base)))))``: every field the
  classification compares, chained through the seed (so values cannot trade places unnoticed).
  ``updated_at`` is left out on purpose: it decides only whether a row is in flight.
"""

from __future__ import annotations

import sys

import numba as nb
import numpy as np

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("pghash: PostgreSQL's hash of a word differs on big-endian machines")

_M32 = np.uint64(0xFFFFFFFF)
_INIT = np.uint64(0x9E3779B9 + 3923095)


@nb.njit(cache=True, nogil=True, inline="always")
def _rot(x, k):
    return ((x << np.uint64(k)) | (x >> np.uint64(32 - k))) & _M32


@nb.njit(cache=True, nogil=True, inline="always")
def _mix(a, b, c):
    a = (a - c) & _M32
    a ^= _rot(c, 4)
    c = (c + b) & _M32
    b = (b - a) & _M32
    b ^= _rot(a, 6)
    a = (a + c) & _M32
    c = (c - b) & _M32
    c ^= _rot(b, 8)
    b = (b + a) & _M32
    a = (a - c) & _M32
    a ^= _rot(c, 16)
    c = (c + b) & _M32
    b = (b - a) & _M32
    b ^= _rot(a, 19)
    a = (a + c) & _M32
    c = (c - b) & _M32
    c ^= _rot(b, 4)
    b = (b + a) & _M32
    return a, b, c


@nb.njit(cache=True, nogil=True, inline="always")
def _final(a, b, c):
    c ^= b
    c = (c - _rot(b, 14)) & _M32
    a ^= c
    a = (a - _rot(c, 11)) & _M32
    b ^= a
    b = (b - _rot(a, 25)) & _M32
    c ^= b
    c = (c - _rot(b, 16)) & _M32
    a ^= c
    a = (a - _rot(c, 4)) & _M32
    b ^= a
    b = (b - _rot(a, 14)) & _M32
    c ^= b
    c = (c - _rot(b, 24)) & _M32
    return a, b, c


@nb.njit(cache=True, nogil=True, inline="always")
def _seeded(length, seed):
    a = (_INIT + np.uint64(length)) & _M32
    b = a
    c = a
    if seed != np.uint64(0):
        a = (a + (seed >> np.uint64(32))) & _M32
        b = (b + (seed & _M32)) & _M32
        a, b, c = _mix(a, b, c)
    return a, b, c


@nb.njit(cache=True, nogil=True, inline="always")
def _word(data, i, n):
    """Little-endian word of up to 4 bytes at ``data[i:i+n]``."""
    w = np.uint64(0)
    for j in range(n):
        w |= np.uint64(data[i + j]) << np.uint64(8 * j)
    return w


@nb.njit(cache=True, nogil=True)
def hash_bytes_extended(data, start, length, seed):
    """``hash_bytes_extended(data[start:start+length], seed)`` as an unsigned 64-bit value."""
    a, b, c = _seeded(length, seed)
    i = start
    left = length
    while left >= 12:
        a = (a + _word(data, i, 4)) & _M32
        b = (b + _word(data, i + 4, 4)) & _M32
        c = (c + _word(data, i + 8, 4)) & _M32
        a, b, c = _mix(a, b, c)
        i += 12
        left -= 12
    if left >= 9:  # the lowest byte of c is reserved for the length
        c = (c + (_word(data, i + 8, left - 8) << np.uint64(8))) & _M32
    if left >= 5:
        b = (b + _word(data, i + 4, min(left, 8) - 4)) & _M32
    if left >= 1:
        a = (a + _word(data, i, min(left, 4))) & _M32
    a, b, c = _final(a, b, c)
    return (b << np.uint64(32)) | c


@nb.njit(cache=True, nogil=True)
def hash_uint32_extended(k, seed):
    """``hash_bytes_uint32_extended(k, seed)`` as an unsigned 64-bit value."""
    a, b, c = _seeded(4, seed)
    a = (a + (np.uint64(k) & _M32)) & _M32
    a, b, c = _final(a, b, c)
    return (b << np.uint64(32)) | c


@nb.njit(cache=True, nogil=True)
def hash_int8_extended(v, seed):
    """``hashint8extended(v, seed)`` (also ``hashint4extended``/``hashint2extended`` of the same value)."""
    u = np.uint64(v)
    lo = u & _M32
    hi = u >> np.uint64(32)
    if v >= 0:
        lo ^= hi
    else:
        lo ^= (~hi) & _M32
    return hash_uint32_extended(lo, seed)


IN_FLIGHT_TAG = 1
TOMBSTONE_TAG = 2


@nb.njit(cache=True, nogil=True)
def row_hash(base, fly, deleted, content, c_start, c_len, data_shards, total_shards, version, size_bytes):
    """The row hash of the diff (see the module docstring), unsigned; ``base`` is the key's hash."""
    if fly:
        return hash_int8_extended(IN_FLIGHT_TAG, base)
    if deleted:
        return hash_int8_extended(TOMBSTONE_TAG, base)
    h = hash_bytes_extended(content, c_start, c_len, base)
    h = hash_int8_extended(np.int64(data_shards), h)
    h = hash_int8_extended(np.int64(total_shards), h)
    h = hash_int8_extended(np.int64(version), h)
    return hash_int8_extended(np.int64(size_bytes), h)


@nb.njit(cache=True, nogil=True)
def bucket_rows(key_off, key_data, content_off, content_data, version, size_bytes, data_shards, total_shards,
                updated_us, deleted, end_us, mask, buckets_out, cnt, fly_cnt, live_cnt, xor_acc, hi_sum):
    """Per row: bucket into ``buckets_out``; per bucket: rows, in flight, live, xor of row hashes
    and the sum of their high 32 bits (signed), added to the accumulators."""
    for r in range(len(version)):
        ks = key_off[r]
        base = hash_bytes_extended(key_data, ks, key_off[r + 1] - ks, np.uint64(0))
        bk = np.int64(base & np.uint64(mask))
        buckets_out[r] = bk
        fly = updated_us[r] >= end_us
        dele = deleted[r] != 0
        cs = content_off[r]
        h = row_hash(base, fly, dele, content_data, cs, content_off[r + 1] - cs, data_shards[r], total_shards[r],
                     version[r], size_bytes[r])
        cnt[bk] += 1
        if fly:
            fly_cnt[bk] += 1
        elif not dele:
            live_cnt[bk] += 1
        xor_acc[bk] ^= h
        hi_sum[bk] += np.int64(np.int32(np.uint32(h >> np.uint64(32))))


@nb.njit(cache=True, nogil=True)
def key_buckets(key_off, key_data, mask, out):
    """The bucket of every key (``hashtextextended(key, 0) & mask``)."""
    for r in range(len(out)):
        ks = key_off[r]
        out[r] = np.int64(hash_bytes_extended(key_data, ks, key_off[r + 1] - ks, np.uint64(0)) & np.uint64(mask))


def as_signed(u: int) -> int:
    """An unsigned 64-bit hash as PostgreSQL's signed ``bigint``."""
    return u - (1 << 64) if u >= 1 << 63 else u


# -- matching rows on their hashes (the ``buckets`` diff) ---------------------------------------

@nb.njit(cache=True, nogil=True)
def build_table(h, slots):
    """An open-addressing table of the row hashes ``h`` (int64 bit patterns): ``slots`` (a power of
    two, at least twice ``len(h)``) pairs of (hash, row index + 1); linear probing; repeats kept."""
    table = np.zeros(2 * slots, np.int64)
    mask = slots - 1
    for i in range(len(h)):
        s = np.int64(np.uint64(h[i]) & np.uint64(mask))
        while table[2 * s + 1] != 0:
            s = (s + 1) & mask
        table[2 * s] = h[i]
        table[2 * s + 1] = i + 1
    return table


@nb.njit(cache=True, nogil=True)
def match_rows(key_off, key_data, content_off, content_data, version, size_bytes, data_shards, total_shards,
               updated_us, deleted, end_us, table, unmatched, bases, counts):
    """Match manifest rows against the table of SoR row hashes, row by row.

    A row whose hash is in the table, not yet taken, takes that entry (its index is negated):
    the pair holds the same row on both sides. ``unmatched[r]`` is set for every other row;
    ``bases[r]`` gets every row's key hash; ``counts`` adds ``[matched, matched in flight,
    matched live]``."""
    slots = len(table) // 2
    mask = slots - 1
    for r in range(len(version)):
        ks = key_off[r]
        base = hash_bytes_extended(key_data, ks, key_off[r + 1] - ks, np.uint64(0))
        bases[r] = np.int64(base)
        fly = updated_us[r] >= end_us
        dele = deleted[r] != 0
        cs = content_off[r]
        h = np.int64(row_hash(base, fly, dele, content_data, cs, content_off[r + 1] - cs, data_shards[r],
                              total_shards[r], version[r], size_bytes[r]))
        s = np.int64(np.uint64(h) & np.uint64(mask))
        found = False
        while table[2 * s + 1] != 0:
            if table[2 * s] == h and table[2 * s + 1] > 0:
                table[2 * s + 1] = -table[2 * s + 1]
                found = True
                break
            s = (s + 1) & mask
        if found:
            unmatched[r] = 0
            counts[0] += 1
            if fly:
                counts[1] += 1
            elif not dele:
                counts[2] += 1
        else:
            unmatched[r] = 1


@nb.njit(cache=True, nogil=True)
def untaken(table, n):
    """Row indexes (into the hashes the table was built from) of the entries no manifest row took."""
    out = np.empty(n, np.int64)
    k = 0
    for s in range(len(table) // 2):
        v = table[2 * s + 1]
        if v > 0:
            out[k] = v - 1
            k += 1
    return out[:k]


@nb.njit(cache=True, nogil=True)
def shares_a_key(bases, unmatched):
    """Whether a matched row has the key hash of an unmatched row (a key the manifest holds twice)."""
    n_un = 0
    for r in range(len(bases)):
        if unmatched[r]:
            n_un += 1
    if n_un == 0:
        return False
    slots = 1
    while slots < 2 * n_un:
        slots *= 2
    keys = np.zeros(slots, np.int64)
    used = np.zeros(slots, np.uint8)
    mask = slots - 1
    for r in range(len(bases)):
        if unmatched[r]:
            s = np.int64(np.uint64(bases[r]) & np.uint64(mask))
            while used[s] and keys[s] != bases[r]:
                s = (s + 1) & mask
            used[s] = 1
            keys[s] = bases[r]
    for r in range(len(bases)):
        if not unmatched[r]:
            s = np.int64(np.uint64(bases[r]) & np.uint64(mask))
            while used[s]:
                if keys[s] == bases[r]:
                    return True
                s = (s + 1) & mask
    return False
